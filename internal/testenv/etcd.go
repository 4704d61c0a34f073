package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// etcdStartTimeout bounds how long a member may take to answer /health.
const etcdStartTimeout = 30 * time.Second

// Etcd is a real etcd cluster (Debian's etcd-server) started for one test:
// its members listen on free ports of 127.0.0.1 and keep their data in the
// test's temporary directory. It needs no root.
type Etcd struct {
	Members []*EtcdMember
	// Endpoints are the members' client URLs.
	Endpoints []string
	// For a cluster started by StartEtcdTLS: the CA that signed the
	// members' serving certificates and the client certificates they
	// accept (CAFile), and a client certificate and key it signed.
	CA                        *CA
	CAFile, CertFile, KeyFile string
}

// EtcdMember is one member of an Etcd.
type EtcdMember struct {
	Name      string
	ClientURL string
	PeerURL   string
	// Dir holds the member's data (data/) and log (etcd.log).
	Dir string

	tb   testing.TB
	bin  string
	args []string
	tls  *tls.Config // to ask /health, nil for http
	proc *kubeProc   // nil while stopped
}

// StartEtcd starts a cluster of n members (1, 3, 5...) with plain http
// client URLs and waits until each answers /health (at most 30 s). At
// cleanup every member still running is stopped. Without /usr/bin/etcd it
// skips the test (fails under ROOST_REQUIRE_PRIVILEGED=1).
func StartEtcd(tb testing.TB, n int) *Etcd {
	tb.Helper()
	return startEtcd(tb, n, false)
}

// StartEtcdTLS is StartEtcd with https client URLs and client certificate
// authentication (--client-cert-auth): a client needs a certificate that
// e.CA signed, such as e.CertFile.
func StartEtcdTLS(tb testing.TB, n int) *Etcd {
	tb.Helper()
	return startEtcd(tb, n, true)
}

func startEtcd(tb testing.TB, n int, withTLS bool) *Etcd {
	tb.Helper()
	bin := Binary(tb, "etcd")
	if n < 1 {
		tb.Fatalf("start etcd: %d members", n)
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	e := &Etcd{}
	scheme := "http"
	var serverCert, serverKey string
	var healthTLS *tls.Config
	if withTLS {
		scheme = "https"
		e.CA = NewCA(tb)
		e.CAFile = e.CA.CertFile
		serverCert, serverKey = e.CA.Issue(tb, "etcd-server", true)
		e.CertFile, e.KeyFile = e.CA.Issue(tb, "roost-test-client", false)
		cert, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
		if err != nil {
			tb.Fatalf("start etcd: %v", err)
		}
		healthTLS = &tls.Config{RootCAs: e.CA.pool(), Certificates: []tls.Certificate{cert}}
	}
	var cluster []string
	token := Name("etcd")
	for i := range n {
		m := &EtcdMember{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: scheme + "://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			PeerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
			Dir:       tb.TempDir(),
			tb:        tb, bin: bin, tls: healthTLS,
		}
		cluster = append(cluster, m.Name+"="+m.PeerURL)
		e.Members = append(e.Members, m)
		e.Endpoints = append(e.Endpoints, m.ClientURL)
	}
	for _, m := range e.Members {
		m.args = []string{
			"--name=" + m.Name,
			"--data-dir=" + filepath.Join(m.Dir, "data"),
			"--listen-client-urls=" + m.ClientURL,
			"--advertise-client-urls=" + m.ClientURL,
			"--listen-peer-urls=" + m.PeerURL,
			"--initial-advertise-peer-urls=" + m.PeerURL,
			"--initial-cluster=" + strings.Join(cluster, ","),
			"--initial-cluster-token=" + token,
			"--initial-cluster-state=new",
			"--quota-backend-bytes=" + strconv.Itoa(256<<20),
			"--logger=zap",
			"--log-outputs=stderr",
		}
		if withTLS {
			m.args = append(m.args, "--cert-file="+serverCert, "--key-file="+serverKey,
				"--trusted-ca-file="+e.CAFile, "--client-cert-auth")
		}
		// Cleanup runs before the removal of Dir, which TempDir registered.
		tb.Cleanup(m.Stop)
	}
	// A member answers /health only once a quorum is up: start all, then
	// wait for each.
	began := time.Now()
	for _, m := range e.Members {
		m.start()
	}
	for _, m := range e.Members {
		m.waitHealthy()
	}
	tb.Logf("etcd %s ready in %v", strings.Join(e.Endpoints, ","), time.Since(began).Round(time.Millisecond))
	return e
}

// start starts the member's process, failing the test when it cannot.
func (m *EtcdMember) start() {
	m.tb.Helper()
	if m.proc != nil {
		m.tb.Fatalf("etcd %s is already running", m.Name)
	}
	p, err := startKubeProc(m.Dir, "etcd", m.bin, m.args...)
	if err != nil {
		m.tb.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.proc = p
}

// Start starts a stopped member again with its data, and waits until it
// answers /health (which needs a quorum of the cluster up).
func (m *EtcdMember) Start() {
	m.tb.Helper()
	m.start()
	m.waitHealthy()
}

// Start starts every stopped member again with its data, then waits
// until each answers /health: a member alone waits for a quorum, so a
// cluster whose members all stopped is started with this, not member by
// member.
func (e *Etcd) Start() {
	var started []*EtcdMember
	for _, m := range e.Members {
		if m.proc == nil {
			m.start()
			started = append(started, m)
		}
	}
	for _, m := range started {
		m.waitHealthy()
	}
}

// Stop ends the member with SIGTERM (SIGKILL after 15 s) and waits for it;
// a stopped member is left alone.
func (m *EtcdMember) Stop() {
	if m.proc == nil {
		return
	}
	m.proc.stop(m.tb)
	m.proc = nil
}

// Kill ends the member with SIGKILL, the way a crash would, and waits.
func (m *EtcdMember) Kill() {
	if m.proc == nil {
		return
	}
	_ = syscall.Kill(-m.proc.cmd.Process.Pid, syscall.SIGKILL)
	<-m.proc.done
	m.proc = nil
}

// Signal sends sig to the member (SIGSTOP and SIGCONT make it hang and go
// on, as a member stuck on its disk would).
func (m *EtcdMember) Signal(sig syscall.Signal) {
	m.tb.Helper()
	if m.proc == nil {
		m.tb.Fatalf("etcd %s is not running", m.Name)
	}
	if err := syscall.Kill(-m.proc.cmd.Process.Pid, sig); err != nil {
		m.tb.Fatalf("signal etcd %s: %v", m.Name, err)
	}
}

// Running reports whether the member's process is running.
func (m *EtcdMember) Running() bool {
	if m.proc == nil {
		return false
	}
	select {
	case <-m.proc.done:
		return false
	default:
		return true
	}
}

// Log returns the last lines of the member's log.
func (m *EtcdMember) Log() string {
	out, err := os.ReadFile(filepath.Join(m.Dir, "etcd.log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.Join(lines[max(0, len(lines)-kubeLogTail):], "\n")
}

// waitHealthy polls the member's /health until it says true.
func (m *EtcdMember) waitHealthy() {
	m.tb.Helper()
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: m.tls}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(etcdStartTimeout)
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		select {
		case <-m.proc.done:
			m.tb.Fatalf("etcd %s exited: %v\n%s", m.Name, m.proc.err, m.Log())
		default:
		}
		resp, err := c.Get(m.ClientURL + "/health")
		if err == nil {
			body, _ := readSome(resp)
			if resp.StatusCode == http.StatusOK && strings.Contains(body, `"health":"true"`) {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	m.tb.Fatalf("etcd %s: %s/health not true within %v: last: %v\n%s", m.Name, m.ClientURL, etcdStartTimeout, last, m.Log())
}

// CA is a certificate authority made for one test, with its certificate in
// a PEM file.
type CA struct {
	CertFile string
	dir      string
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
}

// NewCA makes a CA in a temporary directory.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: "roost test CA " + Name("ca")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{dir: tb.TempDir(), cert: cert, key: key}
	ca.CertFile = filepath.Join(ca.dir, "ca.crt")
	writePEM(tb, ca.CertFile, "CERTIFICATE", der)
	return ca
}

// Issue makes a certificate and key for name, signed by ca, and returns
// their files. A server certificate is for 127.0.0.1, ::1 and localhost
// (and may also authenticate a client); a client certificate only
// authenticates a client, with name as its common name.
func (ca *CA) Issue(tb testing.TB, name string, server bool) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	writePEM(tb, certFile, "CERTIFICATE", der)
	writePEM(tb, keyFile, "EC PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// pool returns a pool holding only ca.
func (ca *CA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func serial(tb testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// NoEtcdClient fails the test when the package in the current directory
// depends on the etcd client (go.etcd.io/etcd/...), which brings gRPC and
// zap along: only the binaries that use the global endpoint view
// (internal/globalview) may link it.
func NoEtcdClient(tb testing.TB) {
	tb.Helper()
	for _, dep := range Deps(tb) {
		if strings.HasPrefix(dep, "go.etcd.io/etcd/") {
			tb.Errorf("depends on %s: keep the etcd client (internal/globalview) out of this binary", dep)
			return
		}
	}
}
