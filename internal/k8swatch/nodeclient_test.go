package k8swatch

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// fakeAPIServer answers the requests of a NodeClient: lists and watches of
// nodes with the field selector metadata.name=node-a, as the admin token;
// anyone else is Forbidden.
func fakeAPIServer(t *testing.T) *httptest.Server {
	node := `{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-a","resourceVersion":"7"},"spec":{"podCIDRs":["10.1.0.0/24"]}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		switch {
		case r.Header.Get("Authorization") != "Bearer admin":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes is forbidden","reason":"Forbidden","code":403}`)
		case r.Method != http.MethodGet || r.URL.Path != "/api/v1/nodes" || q.Get("fieldSelector") != "metadata.name=node-a":
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
			w.WriteHeader(http.StatusBadRequest)
		case q.Get("watch") == "true":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", node)
			fmt.Fprintf(w, `{"type":"DELETED","object":%s}`+"\n", node)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"kind":"NodeList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[%s]}`, node)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestNodeClient(t *testing.T) {
	srv := fakeAPIServer(t)
	newClient := func(t *testing.T, token string) *NodeClient {
		t.Helper()
		c, err := NewNodeClientForConfig(&rest.Config{Host: srv.URL, BearerToken: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	opts := metav1.ListOptions{FieldSelector: "metadata.name=node-a"}
	ctx := context.Background()

	t.Run("list", func(t *testing.T) {
		l, err := newClient(t, "admin").List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) != 1 || l.Items[0].Name != "node-a" || !slices.Equal(l.Items[0].Spec.PodCIDRs, []string{"10.1.0.0/24"}) {
			t.Errorf("List = %+v, want node-a with 10.1.0.0/24", l.Items)
		}
	})

	t.Run("watch", func(t *testing.T) {
		w, err := newClient(t, "admin").Watch(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		var got []string
		for e := range w.ResultChan() {
			n, ok := e.Object.(*corev1.Node)
			if !ok {
				t.Fatalf("event %s carries a %T, want a *corev1.Node", e.Type, e.Object)
			}
			got = append(got, string(e.Type)+" "+n.Name)
		}
		if want := []string{string(watch.Added) + " node-a", string(watch.Deleted) + " node-a"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		c := newClient(t, "nobody")
		if _, err := c.List(ctx, opts); !apierrors.IsForbidden(err) {
			t.Errorf("List = %v, want Forbidden", err)
		}
		if _, err := c.Watch(ctx, opts); !apierrors.IsForbidden(err) {
			t.Errorf("Watch = %v, want Forbidden", err)
		}
	})
}
