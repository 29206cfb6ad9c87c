package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is a process the benchmark started and measures from outside: its peak resident memory
// is the kernel's high-water mark (VmHWM), sampled until it is stopped.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	peak atomic.Int64 // bytes
	stop chan struct{}
}

func startProc(name string, cmd *exec.Cmd) (*proc, error) {
	// The children go when the benchmark does, however it ends (a panic, a kill): a server left
	// behind would hold the data directory and skew the next run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), stop: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	go p.sample()
	return p, nil
}

// sample keeps the high-water mark while the process runs (read once more just before stop).
func (p *proc) sample() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		p.readHWM()
		select {
		case <-p.done:
			return
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *proc) readHWM() {
	if n := procStatus(p.cmd.Process.Pid, "VmHWM:"); n > p.peak.Load() {
		p.peak.Store(n)
	}
}

// Stop ends the process with SIGTERM (a graceful shutdown, as an operator's service manager
// does) and returns its peak RSS.
func (p *proc) Stop() (int64, error) {
	select {
	case <-p.done:
		return p.peak.Load(), fmt.Errorf("%s exited early: %v", p.name, p.err)
	default:
	}
	p.readHWM()
	close(p.stop)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return p.peak.Load(), fmt.Errorf("%s did not stop within 30s of SIGTERM", p.name)
	}
	var ee *exec.ExitError
	if p.err != nil && !(errors.As(p.err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()) {
		return p.peak.Load(), fmt.Errorf("%s: %w", p.name, p.err)
	}
	return p.peak.Load(), nil
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(field)); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(v)), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// onOff is a boolean setting's value.
func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ohxServer is `ohx serve` on the data set, started the way an operator starts it: settings in
// the environment, logs to a file, nothing shared with the benchmark's process.
type ohxServer struct {
	*proc
	origin string // http://127.0.0.1:PORT
	pprof  string // http://127.0.0.1:PORT of the profiles, when profiling
	env    []string
}

func startOhx(ctx context.Context, cfg config, dataDir string, cache bool) (*ohxServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &ohxServer{origin: "http://" + addr}
	s.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"OHX_ADDR=" + addr, "OHX_BASE_URL=" + s.origin + "/fhir", "OHX_DATA_DIR=" + dataDir,
		"OHX_LOG_LEVEL=" + cfg.logLevel, "OHX_RESULT_CACHE=" + onOff(cache)}
	s.env = append(s.env, cfg.serverEnv...)
	if cfg.profile {
		pa, err := freeAddr()
		if err != nil {
			return nil, err
		}
		s.pprof = "http://" + pa
		s.env = append(s.env, "OHX_PPROF_ADDR="+pa)
	}
	logPath := filepath.Join(cfg.dir, "ohx-serve.log")
	// Each server's log replaces the previous one's: a run's access log is hundreds of MB.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(cfg.ohx, "serve")
	cmd.Env, cmd.Stdout, cmd.Stderr = s.env, logf, logf
	if s.proc, err = startProc("ohx serve", cmd); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := httpClient.Get(s.origin + "/fhir/metadata")
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("ohx serve exited (%v); see %s", s.err, logPath)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("ohx serve not ready after 60s; see %s", logPath)
		}
	}
}

// token gets an access token of the demo backend client from the server's token endpoint, with
// the `ohx token` command an operator would use.
func (s *ohxServer) token(ctx context.Context, cfg config) (string, error) {
	cmd := exec.CommandContext(ctx, cfg.ohx, "token", "-token-url", s.origin+"/auth/token")
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("ohx token: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// save writes the server's profile at path (e.g. "profile?seconds=8" or "heap") to file.
func (s *ohxServer) save(ctx context.Context, path, file string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.pprof+"/debug/pprof/"+path, nil)
	res, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", path, res.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// bareServer is a plain net/http handler in a process of its own that answers each request URI
// with the bytes ohx answered it with: the ceiling any server could reach with the same
// responses, client and machine.
type bareServer struct {
	*proc
	origin string
}

type bareBodies struct {
	ContentType string            `json:"content_type"`
	Bodies      map[string][]byte `json:"bodies"` // request URI → body
}

func startBare(dir string, bodies bareBodies) (*bareServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "bare-bodies.json")
	b, _ := json.Marshal(bodies)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "bare", path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p, err := startProc("bare handler", cmd)
	if err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("bare handler: %w", err)
	}
	return &bareServer{proc: p, origin: "http://" + strings.TrimSpace(line)}, nil
}

// runBare is the bare handler's process: `ohxbench bare BODIES.json` prints its address and
// serves until SIGTERM.
func runBare(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: ohxbench bare BODIES.json")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	var bodies bareBodies
	if err := json.Unmarshal(b, &bodies); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies.Bodies[r.URL.RequestURI()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", bodies.ContentType)
		w.Write(body)
	}))
}
