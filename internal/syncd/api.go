package syncd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roost-net/roost/internal/fieldcheck"
)

// MaxBodyBytes bounds a request's body.
const MaxBodyBytes = 64 << 10

// Registration is the body of PUT /v1/workloads/{namespace}/{name}.
type Registration struct {
	// IPs are the workload's addresses: at least one, at most MaxIPs.
	IPs []string `json:"ips"`
	// Labels are its own labels; at most MaxLabels, none under
	// io.cilium.k8s.
	Labels map[string]string `json:"labels"`
}

// WorkloadInfo is a workload as the API shows it.
type WorkloadInfo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Source is SourceFile or SourceAPI.
	Source string            `json:"source"`
	IPs    []netip.Addr      `json:"ips"`
	Labels map[string]string `json:"labels"`
	// LastSeen is the last registration or heartbeat of an API
	// workload, Expires when it expires without another.
	LastSeen time.Time `json:"lastSeen,omitzero"`
	Expires  time.Time `json:"expires,omitzero"`
}

// WorkloadList is the answer of GET /v1/workloads.
type WorkloadList struct {
	Workloads []WorkloadInfo `json:"workloads"`
}

// Error is the body of every error answer.
type Error struct {
	// Error says what is wrong, every problem joined with "; ".
	Error string `json:"error"`
	// Problems are the problems of a request's input, each "field:
	// message" (the path's namespace and name, ips[1], labels.<key>).
	Problems []string `json:"problems,omitempty"`
}

func info(e entry) WorkloadInfo {
	return WorkloadInfo{
		Namespace: e.Namespace, Name: e.Name, Source: e.Source, IPs: e.IPs, Labels: e.Labels,
		LastSeen: e.LastSeen.UTC(), Expires: e.Expires.UTC(),
	}
}

// Handler returns the HTTP API:
//
//	PUT    /v1/workloads/{namespace}/{name}            register or update (201, 200)
//	POST   /v1/workloads/{namespace}/{name}/heartbeat  204; 404 unknown
//	DELETE /v1/workloads/{namespace}/{name}            204; 404 unknown
//	GET    /v1/workloads/{namespace}/{name}            one workload
//	GET    /v1/workloads                               every workload
//	GET    /v1/status                                  Status
//	GET    /healthz, /readyz, /metrics
//
// Errors are JSON (Error). A file workload cannot be changed, deleted or
// heartbeated through the API (409).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, methods map[string]http.HandlerFunc) {
		allowed := slices.Sorted(maps.Keys(methods))
		for m, h := range methods {
			mux.HandleFunc(m+" "+path, h)
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			d.fail(w, http.StatusMethodNotAllowed, Error{Error: fmt.Sprintf("method %s not allowed on %s; use %s", r.Method, path, strings.Join(allowed, " or "))})
		})
	}
	route("/v1/workloads/{namespace}/{name}", map[string]http.HandlerFunc{
		http.MethodPut: d.servePut, http.MethodDelete: d.serveNoContent(d.deregister), http.MethodGet: d.serveGet,
	})
	route("/v1/workloads/{namespace}/{name}/heartbeat", map[string]http.HandlerFunc{http.MethodPost: d.serveNoContent(d.heartbeat)})
	route("/v1/workloads", map[string]http.HandlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		out := WorkloadList{Workloads: []WorkloadInfo{}}
		for _, e := range d.workloads() {
			out.Workloads = append(out.Workloads, info(e))
		}
		writeJSON(w, http.StatusOK, out)
	}})
	route("/v1/status", map[string]http.HandlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, d.Status())
	}})
	route("/healthz", map[string]http.HandlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}})
	route("/readyz", map[string]http.HandlerFunc{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
		if s := d.Status(); !s.Ready {
			http.Error(w, "not ready: "+s.NotReady, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	}})
	route("/metrics", map[string]http.HandlerFunc{http.MethodGet: promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}).ServeHTTP})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.fail(w, http.StatusNotFound, Error{Error: fmt.Sprintf("no such path %s: see docs/roost-sync.md for the API", r.URL.Path)})
	})
	return mux
}

// pathID checks the namespace and name of a request's path and returns
// the workload's ID.
func pathID(r *http.Request, ps *fieldcheck.Problems) (ns, name string) {
	ns, name = r.PathValue("namespace"), r.PathValue("name")
	for _, msg := range namespaceProblems(ns) {
		ps.Add("namespace", "%s", msg)
	}
	for _, msg := range nameProblems(name) {
		ps.Add("name", "%s", msg)
	}
	return ns, name
}

func (d *Daemon) servePut(w http.ResponseWriter, r *http.Request) {
	var ps fieldcheck.Problems
	ns, name := pathID(r, &ps)
	reg, status, err := decodeRegistration(w, r)
	if err != nil {
		d.fail(w, status, Error{Error: err.Error()})
		return
	}
	wl := reg.workload(ns, name, &ps)
	if len(ps) > 0 {
		d.failProblems(w, ps)
		return
	}
	e, created, err := d.register(wl)
	if err != nil {
		d.failRegistry(w, err)
		return
	}
	status = http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, info(e))
}

// serveNoContent returns a handler that applies act to the workload the
// path names, answering 204 or act's error.
func (d *Daemon) serveNoContent(act func(id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ps fieldcheck.Problems
		ns, name := pathID(r, &ps)
		if len(ps) > 0 {
			d.failProblems(w, ps)
			return
		}
		if err := act(ns + "/" + name); err != nil {
			d.failRegistry(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (d *Daemon) serveGet(w http.ResponseWriter, r *http.Request) {
	var ps fieldcheck.Problems
	ns, name := pathID(r, &ps)
	if len(ps) > 0 {
		d.failProblems(w, ps)
		return
	}
	e, ok := d.workload(ns + "/" + name)
	if !ok {
		d.failRegistry(w, fmt.Errorf("%s/%s: %w", ns, name, ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, info(e))
}

// decodeRegistration reads a request's body: one JSON object with no
// unknown field, at most MaxBodyBytes. On an error it returns the status
// to answer with.
func decodeRegistration(w http.ResponseWriter, r *http.Request) (Registration, int, error) {
	var reg Registration
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&reg)
	if err == nil {
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("data after the JSON object")
		}
	}
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case err == nil:
		return reg, 0, nil
	case errors.As(err, &tooLarge):
		return reg, http.StatusRequestEntityTooLarge, fmt.Errorf("body: larger than %d bytes", MaxBodyBytes)
	case errors.Is(err, io.EOF):
		return reg, http.StatusBadRequest, errors.New(`body: empty; want {"ips": ["10.0.9.10"], "labels": {"app": "web"}}`)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reg, http.StatusBadRequest, errors.New("body: not JSON: it ends within a value")
	case errors.As(err, &syntax):
		return reg, http.StatusBadRequest, fmt.Errorf("body: not JSON, at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ) && typ.Field == "":
		return reg, http.StatusBadRequest, fmt.Errorf(`body: must be a JSON object {"ips": [...], "labels": {...}}, not a JSON %s`, typ.Value)
	case errors.As(err, &typ):
		return reg, http.StatusBadRequest, fmt.Errorf("body: %s: want %s, not a JSON %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return reg, http.StatusBadRequest, fmt.Errorf("body: unknown field %s (known: ips, labels)", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return reg, http.StatusBadRequest, fmt.Errorf("body: %v", err)
}

// workload checks reg and returns the workload it registers as ns/name,
// adding its problems to ps.
func (reg Registration) workload(ns, name string, ps *fieldcheck.Problems) Workload {
	w := Workload{Namespace: ns, Name: name, Labels: map[string]string{}}
	switch {
	case len(reg.IPs) == 0:
		ps.Add("ips", "required: at least one address")
	case len(reg.IPs) > MaxIPs:
		ps.Add("ips", "%d addresses; at most %d", len(reg.IPs), MaxIPs)
	}
	seen := map[netip.Addr]int{}
	for i, s := range reg.IPs {
		field := fmt.Sprintf("ips[%d]", i)
		a, err := parseAddr(s)
		if err != nil {
			ps.Add(field, "%v", err)
			continue
		}
		if j, dup := seen[a]; dup {
			ps.Add(field, "%s repeats ips[%d]", a, j)
			continue
		}
		seen[a] = i
		w.IPs = append(w.IPs, a)
	}
	slices.SortFunc(w.IPs, netip.Addr.Compare)
	if len(reg.Labels) > MaxLabels {
		ps.Add("labels", "%d labels; at most %d", len(reg.Labels), MaxLabels)
	}
	for _, k := range slices.Sorted(maps.Keys(reg.Labels)) {
		v := reg.Labels[k]
		problems := append(labelKeyProblems(k), labelValueProblems(v)...)
		for _, msg := range problems {
			ps.Add("labels."+k, "%s", msg)
		}
		if len(problems) == 0 {
			w.Labels[k] = v
		}
	}
	return w
}

// failRegistry answers with the status of a registry error.
func (d *Daemon) failRegistry(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrFromFile), errors.Is(err, ErrAddressInUse):
		status = http.StatusConflict
	case errors.Is(err, ErrTooMany):
		status = http.StatusInsufficientStorage
	}
	d.fail(w, status, Error{Error: err.Error()})
}

// failProblems answers 400 with the problems of a request's input.
func (d *Daemon) failProblems(w http.ResponseWriter, ps fieldcheck.Problems) {
	e := Error{}
	for _, p := range ps {
		e.Problems = append(e.Problems, p.Error())
	}
	e.Error = strings.Join(e.Problems, "; ")
	d.fail(w, http.StatusBadRequest, e)
}

// fail answers with an error and counts it.
func (d *Daemon) fail(w http.ResponseWriter, status int, e Error) {
	d.metrics.requestErrors.WithLabelValues(strconv.Itoa(status)).Inc()
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}
