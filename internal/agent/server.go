package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/roost-net/roost/internal/agentapi"
	"github.com/roost-net/roost/internal/inspect"
)

// Handler returns the agent's read-only HTTP API, for its TCP listener:
// health, readiness, metrics and status. Nothing it serves holds a secret
// or changes state.
func (a *Agent) Handler() http.Handler {
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
	return mux
}

// ControlHandler returns the API of the agent's control socket: status, the
// rendered config (passwords redacted) and reload, which re-reads the
// configuration file (reload is nil when there is nothing to re-read) and
// applies again. The socket's file permissions say who may use it.
func (a *Agent) ControlHandler(reload func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentapi.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, a.Status())
	})
	mux.HandleFunc("GET "+agentapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		out, file, err := a.Rendered()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, agentapi.Config{File: file, Rendered: string(inspect.RedactBirdConfig(out))})
	})
	mux.HandleFunc("POST "+agentapi.PathDrain, func(w http.ResponseWriter, r *http.Request) {
		var req agentapi.DrainRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			http.Error(w, "drain: body: "+err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		wait := a.cfg.Drain.Wait
		a.mu.Unlock()
		if req.Wait != "" {
			d, err := time.ParseDuration(req.Wait)
			if err != nil || d < 0 || d > time.Hour {
				http.Error(w, fmt.Sprintf("drain: wait %q is not a duration from 0 to 1h", req.Wait), http.StatusBadRequest)
				return
			}
			wait = d
		}
		d, err := a.Drain(wait)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, d)
	})
	mux.HandleFunc("POST "+agentapi.PathUndrain, func(w http.ResponseWriter, r *http.Request) {
		d, err := a.Undrain()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, d)
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
