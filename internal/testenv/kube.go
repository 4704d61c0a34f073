package testenv

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeAPIServer is where scripts/deps.sh test installs kube-apiserver.
const KubeAPIServer = "/opt/roost-test/bin/kube-apiserver"

const (
	// kubeStartTimeout bounds how long StartKube waits for /readyz.
	kubeStartTimeout = 60 * time.Second
	// kubeStopTimeout bounds how long a stop waits after SIGTERM before
	// it sends SIGKILL.
	kubeStopTimeout = 15 * time.Second
	// kubeLogTail is how many lines of each log a failure shows.
	kubeLogTail = 40
)

// Kube is a real Kubernetes API server on a real etcd, both on 127.0.0.1 and
// started for one test. It knows two users, by bearer token: an admin (group
// system:masters) and roost-nobody, who has no groups and so, under RBAC,
// may read nothing but discovery.
type Kube struct {
	// Dir holds the certificates, keys, tokens, kubeconfigs, etcd's data
	// and both logs (etcd.log, kube-apiserver.log).
	Dir string
	// Kubeconfig is the path of a kubeconfig for the admin.
	Kubeconfig string
	// NobodyKubeconfig is the path of a kubeconfig for roost-nobody.
	NobodyKubeconfig string
	// Config is the admin's client config.
	Config *rest.Config
	// Client is a clientset for the admin.
	Client kubernetes.Interface

	etcd, apiserver *kubeProc
}

// kubeProc is one running etcd or kube-apiserver.
type kubeProc struct {
	name string
	log  string        // path of its stdout and stderr
	cmd  *exec.Cmd     // started, in a process group of its own
	done chan struct{} // closed when the process has exited
	err  error         // valid once done is closed
}

// StartKube starts etcd and kube-apiserver in a fresh temporary directory, on
// free ports of 127.0.0.1, and waits (at most 60 s) until /readyz answers
// 200. If they do not start, it fails the test with the tails of both logs.
// At cleanup it stops kube-apiserver, then etcd (SIGTERM, then SIGKILL). Two
// calls share nothing, so tests in different packages may run at once.
//
// kube-apiserver needs no root, but the tests that use it are privileged
// tests: StartKube calls Privileged first. There is no controller manager,
// scheduler or kubelet: nothing assigns PodCIDRs, creates service accounts
// (the ServiceAccount admission plugin is off), schedules pods or sets
// their status, so tests set spec.nodeName and status themselves.
func StartKube(tb testing.TB) *Kube {
	tb.Helper()
	Privileged(tb)
	if _, err := os.Stat(KubeAPIServer); err != nil {
		skip(tb, "kube-apiserver is not installed at "+KubeAPIServer+" (run scripts/deps.sh test)")
	}
	etcdBin := Binary(tb, "etcd")

	k := &Kube{Dir: tb.TempDir()}
	ports, err := freePorts(3)
	if err != nil {
		tb.Fatalf("start kube: %v", err)
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	server := "https://127.0.0.1:" + strconv.Itoa(ports[2])
	adminToken, nobodyToken := randomToken(), randomToken()
	if err := k.writeFiles(adminToken, nobodyToken); err != nil {
		tb.Fatalf("start kube: %v", err)
	}
	// Cleanup runs before the removal of Dir, which TempDir registered.
	tb.Cleanup(func() { k.stop(tb) })

	began := time.Now()
	k.etcd, err = startKubeProc(k.Dir, "etcd", etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(k.Dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--initial-cluster-state=new",
		"--quota-backend-bytes="+strconv.Itoa(256<<20),
		"--snapshot-count=1000",
		"--max-snapshots=1",
		"--max-wals=1",
		"--logger=zap",
		"--log-outputs=stderr",
	)
	if err != nil {
		tb.Fatalf("start kube: %v", err)
	}
	k.apiserver, err = startKubeProc(k.Dir, "kube-apiserver", KubeAPIServer,
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(ports[2]),
		"--cert-dir="+filepath.Join(k.Dir, "certs"),
		"--token-auth-file="+filepath.Join(k.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file="+filepath.Join(k.Dir, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(k.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
		// No controller manager creates the default service account
		// that this plugin would wait for.
		"--disable-admission-plugins=ServiceAccount",
		// 127.0.0.1 cannot be an endpoint of the kubernetes Service.
		"--endpoint-reconciler-type=none",
	)
	if err != nil {
		tb.Fatalf("start kube: %v", err)
	}
	if err := k.waitReady(server, adminToken); err != nil {
		tb.Fatalf("start kube: %v\n%s", err, k.logTails())
	}
	tb.Logf("kube-apiserver %s ready in %v", server, time.Since(began).Round(time.Millisecond))

	ca, err := os.ReadFile(filepath.Join(k.Dir, "certs", "apiserver.crt"))
	if err != nil {
		tb.Fatalf("start kube: serving certificate: %v", err)
	}
	k.Kubeconfig = filepath.Join(k.Dir, "admin.kubeconfig")
	k.NobodyKubeconfig = filepath.Join(k.Dir, "nobody.kubeconfig")
	for _, kc := range []struct{ path, user, token string }{
		{k.Kubeconfig, "roost-admin", adminToken},
		{k.NobodyKubeconfig, "roost-nobody", nobodyToken},
	} {
		if err := writeKubeconfig(kc.path, server, ca, kc.user, kc.token); err != nil {
			tb.Fatalf("start kube: %v", err)
		}
	}
	if k.Config, err = clientcmd.BuildConfigFromFlags("", k.Kubeconfig); err != nil {
		tb.Fatalf("start kube: kubeconfig %s: %v", k.Kubeconfig, err)
	}
	// Tests create objects in bursts; client-go's default limit (5/s)
	// would only slow them down.
	k.Config.QPS, k.Config.Burst = 100, 200
	if k.Client, err = kubernetes.NewForConfig(k.Config); err != nil {
		tb.Fatalf("start kube: clientset: %v", err)
	}
	return k
}

// writeFiles writes the token file and the service account key pair.
func (k *Kube) writeFiles(adminToken, nobodyToken string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("service account key: %w", err)
	}
	files := map[string][]byte{
		// token,user,uid,"groups"
		"tokens.csv": []byte(adminToken + ",roost-admin,roost-admin,system:masters\n" +
			nobodyToken + ",roost-nobody,roost-nobody\n"),
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(k.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// waitReady polls server's /readyz with the admin token until it answers
// 200, one of the processes exits or kubeStartTimeout passes.
func (k *Kube) waitReady(server, token string) error {
	// The serving certificate does not exist before kube-apiserver makes
	// it; what talks to the server after this uses it.
	c := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(kubeStartTimeout)
	last := errors.New("no answer yet")
	for time.Now().Before(deadline) {
		for _, p := range []*kubeProc{k.etcd, k.apiserver} {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited: %v", p.name, p.err)
			default:
			}
		}
		req, err := http.NewRequest(http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err == nil {
			body, _ := readSome(resp)
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s/readyz did not answer 200 within %v: last: %v", server, kubeStartTimeout, last)
}

// readSome reads and closes a response body, keeping at most 4 KiB.
func readSome(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return string(bytes.TrimSpace(b)), err
}

// stop ends kube-apiserver, then etcd; it is registered as cleanup.
func (k *Kube) stop(tb testing.TB) {
	for _, p := range []*kubeProc{k.apiserver, k.etcd} {
		if p != nil {
			p.stop(tb)
		}
	}
}

// logTails returns the last lines of both logs; both processes must have
// been started.
func (k *Kube) logTails() string {
	var b strings.Builder
	for _, p := range []*kubeProc{k.etcd, k.apiserver} {
		out, err := os.ReadFile(p.log)
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", p.log, err)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		lines = lines[max(0, len(lines)-kubeLogTail):]
		fmt.Fprintf(&b, "last %d lines of %s:\n%s\n", len(lines), p.log, strings.Join(lines, "\n"))
	}
	return b.String()
}

// startKubeProc starts bin with args, its output going to <dir>/<name>.log.
func startKubeProc(dir, name, bin string, args ...string) (*kubeProc, error) {
	p := &kubeProc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	log, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer log.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	// Pdeathsig kills the process should the test binary die without
	// cleanup (a -timeout panic).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error)
	go func() {
		// Pdeathsig fires when the thread that started the process
		// ends, not the process: keep this thread for the child's life.
		// The goroutine ends locked, so Go discards the thread then.
		runtime.LockOSThread()
		if err := p.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// stop sends SIGTERM to the process group, and SIGKILL when the process has
// not exited within kubeStopTimeout, and waits for it. A process that
// survives SIGKILL fails the test.
func (p *kubeProc) stop(tb testing.TB) {
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(kubeStopTimeout):
	}
	tb.Logf("stop kube: %s did not exit within %v of SIGTERM; killing it", p.name, kubeStopTimeout)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(kubeStopTimeout):
		tb.Errorf("stop kube: %s (pid %d) survived SIGKILL for %v", p.name, pgid, kubeStopTimeout)
	}
}

// freePorts returns n distinct TCP ports that are free on 127.0.0.1 now. It
// holds them all before releasing any, so that they differ; another program
// may still take one before the daemon binds it, which is unlikely enough.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// randomToken returns a fresh bearer token.
func randomToken() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// writeKubeconfig writes a kubeconfig that reaches server, trusting ca, as
// user with a bearer token.
func writeKubeconfig(path, server string, ca []byte, user, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["roost-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[user] = &clientcmdapi.Context{Cluster: "roost-test", AuthInfo: user}
	cfg.CurrentContext = user
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// KubeClient returns a clientset for the kubeconfig file at path (one of
// Kube's: Kubeconfig, NobodyKubeconfig), as roost's binaries make theirs.
func KubeClient(tb testing.TB, path string) kubernetes.Interface {
	tb.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		tb.Fatalf("kubeconfig %s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatalf("clientset from %s: %v", path, err)
	}
	return cs
}
