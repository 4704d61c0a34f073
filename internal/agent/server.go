package agent

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/roost-net/roost/internal/agentapi"
)

// Handler returns the agent's HTTP API: health, readiness, metrics, status,
// the rendered config, and reload. reload re-reads the configuration file
// (nil when there is nothing to re-read); the agent then applies again.
func (a *Agent) Handler(reload func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathHealthz, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET "+agentapi.PathReadyz, func(w http.ResponseWriter, r *http.Request) {
		s := a.Status()
		if !s.Ready {
			http.Error(w, "not ready: "+s.ReadyMessage, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET "+agentapi.PathMetrics, a.metrics.Handler())
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status())
	})
	mux.HandleFunc("GET "+agentapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		out, file, err := a.Rendered()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, agentapi.Config{File: file, Rendered: string(out)})
	})
	mux.HandleFunc("POST "+agentapi.PathReload, func(w http.ResponseWriter, r *http.Request) {
		if reload != nil {
			if err := reload(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		select {
		case <-a.Reload():
		case <-r.Context().Done():
			return
		}
		writeJSON(w, a.Status())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
