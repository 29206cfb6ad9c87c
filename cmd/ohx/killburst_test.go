package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/openhealthexchange/ohx/providers"
	"github.com/openhealthexchange/ohx/providers/pipeline"
	"github.com/openhealthexchange/ohx/store/seal"
	"github.com/openhealthexchange/ohx/store/sqlite"
)

// serveChildEnv, when set, turns the test binary into `ohx serve` (TestMain): the kill test
// re-executes itself as a real OS process that it can SIGKILL, without a separate go build.
const serveChildEnv = "OHX_TEST_SERVE_CHILD"

// serveChild runs `ohx serve` with the process's environment, as main does, and returns the
// exit code.
func serveChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, []string{"serve"}, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ohx:", err)
		return 1
	}
	return 0
}

// Kill test sizes: killUsers patients × killDays days of distinct notifications, far more than
// the burst sends before the kill; the kill comes after killAfterAcks acknowledgements or
// killAfter, whichever is first, and at least minAcks must have been acknowledged by then.
const (
	killUsers     = 50
	killDays      = 100
	killSenders   = 8
	killAfterAcks = 1500
	killAfter     = 1500 * time.Millisecond
	minAcks       = 25
)

// TestKillDuringWebhookBurst: `ohx serve` is SIGKILLed while eight senders deliver distinct
// Withings notifications; every notification it acknowledged (2xx) is a job in the queue when
// the data dir is opened again, and a server restarted on the dir opens it and keeps the queue.
// The fake Withings answers every call 503, so that no job completes (a completed job would
// have left the queue) and failed runs wait for their retry: the jobs the test looks for are
// all still there, whatever the runner did before the kill. Run with the queue's default
// durability (full) and with normal, which promises to survive a killed process too.
func TestKillDuringWebhookBurst(t *testing.T) {
	for _, qs := range []string{"", "normal"} {
		name := qs
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) { testKillBurst(t, qs) })
	}
}

// killNote is one notification of the burst: patient u's Withings weight data on day.
type killNote struct {
	user int
	day  int64 // Unix seconds of a UTC midnight
}

func testKillBurst(t *testing.T, queueSync string) {
	var vendorCalls atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vendorCalls.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	t.Cleanup(fake.Close)

	dir := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	seedWithingsConnections(t, dir, key, killUsers)
	env := map[string]string{
		"OHX_DATA_DIR": dir, "OHX_ADDR": "127.0.0.1:0", "OHX_BASE_URL": "http://ohx.test/fhir", "OHX_AUTH": "off",
		"OHX_SECRET_KEY":           base64.StdEncoding.EncodeToString(key),
		"OHX_IDENTIFIER_NAMESPACE": "https://ohx-killtest.example",
		"OHX_WITHINGS_CLIENT_ID":   "kill", "OHX_WITHINGS_CLIENT_SECRET": "kill-secret", "OHX_WITHINGS_API_URL": fake.URL,
		"OHX_LOG_FORMAT": "json", "OHX_SHUTDOWN_TIMEOUT": "5s",
	}
	if queueSync != "" {
		env["OHX_QUEUE_SYNC"] = queueSync
	}

	child := startChild(t, env)
	hook := child.origin + "/webhooks/withings/" + webhookSecret(key, "withings")
	today := time.Now().UTC().Truncate(24 * time.Hour)
	note := func(i int) killNote {
		return killNote{user: i % killUsers, day: today.AddDate(0, 0, -(1 + i/killUsers)).Unix()}
	}
	total := killUsers * killDays

	var (
		next, sent, failed atomic.Int64
		killed             atomic.Bool
		mu                 sync.Mutex
		acked              []killNote
	)
	ackedNow := make(chan struct{}, 1)
	var wg sync.WaitGroup
	start := time.Now()
	for range killSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A connection of its own per sender, as a vendor's delivery workers have.
			hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			for !killed.Load() {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				n := note(i)
				// startdate = enddate: one instant of the day, which the notifier widens to the day.
				at := n.day + int64((i*7919)%86400)
				form := url.Values{"userid": {killUserID(n.user)}, "appli": {"1"},
					"startdate": {strconv.FormatInt(at, 10)}, "enddate": {strconv.FormatInt(at, 10)}}
				sent.Add(1)
				res, err := hc.Post(hook, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
				if err != nil {
					failed.Add(1)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode/100 != 2 {
					failed.Add(1)
					continue
				}
				mu.Lock()
				acked = append(acked, n)
				mu.Unlock()
				select {
				case ackedNow <- struct{}{}:
				default:
				}
			}
		}()
	}
	// Kill mid-burst: after killAfterAcks acknowledgements or killAfter, whichever comes first.
	deadline := time.After(killAfter)
wait:
	for {
		select {
		case <-ackedNow:
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= killAfterAcks {
				break wait
			}
		case <-deadline:
			break wait
		}
	}
	child.kill(t)
	killed.Store(true)
	wg.Wait()
	burst := time.Since(start)
	t.Logf("queue sync %q: %d sent in %s, %d acknowledged, %d failed (in flight at the kill or after it), %d vendor calls",
		queueSync, sent.Load(), burst.Round(time.Millisecond), len(acked), failed.Load(), vendorCalls.Load())
	if len(acked) < minAcks {
		t.Fatalf("only %d notifications acknowledged before the kill, want at least %d: the test proves nothing", len(acked), minAcks)
	}
	if int(next.Load()) >= total {
		t.Fatalf("the burst ended before the kill (%d notifications): raise killUsers or killDays", total)
	}

	jobs := queuedDays(t, dir)
	lost := 0
	for _, n := range acked {
		if !jobs[n] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged notifications have no job after the kill (%d jobs queued)", lost, len(acked), len(jobs))
	}
	if len(jobs) > int(sent.Load()) {
		t.Errorf("%d fetch jobs for %d notifications sent", len(jobs), sent.Load())
	}

	// Recovery: a server started on the killed one's dir opens it, serves, acknowledges a new
	// notification, stops cleanly, and the queue still holds every acknowledged notification.
	child = startChild(t, env)
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(child.origin + path)
		if err != nil {
			t.Fatalf("%s after the restart: %v", path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s after the restart: %d", path, res.StatusCode)
		}
	}
	fresh := killNote{user: 0, day: today.AddDate(0, 0, -(2 + killDays)).Unix()}
	hook = child.origin + "/webhooks/withings/" + webhookSecret(key, "withings")
	form := url.Values{"userid": {killUserID(fresh.user)}, "appli": {"1"}, "startdate": {strconv.FormatInt(fresh.day+60, 10)}, "enddate": {strconv.FormatInt(fresh.day+60, 10)}}
	res, err := http.Post(hook, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a notification after the restart: %d", res.StatusCode)
	}
	child.stop(t)
	after := queuedDays(t, dir)
	missing := 0
	for _, n := range append(acked, fresh) {
		if !after[n] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("after the restart %d acknowledged notifications have no job (%d jobs queued, %d before)", missing, len(after), len(jobs))
	}
}

// killUserID is patient u's Withings user id.
func killUserID(u int) string { return strconv.Itoa(50_000_000 + u) }

// seedWithingsConnections stores active Withings connections of patients kb0…kb(n-1) in a new
// embedded store in dir, their tokens sealed with the vault key `ohx serve` derives from key.
func seedWithingsConnections(t *testing.T, dir string, key []byte, n int) {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vk := seal.Derive(key, "ohx vendor token vault")
	vault, err := providers.NewVault(st, map[string][]byte{keyID(vk): vk}, keyID(vk), nil)
	if err != nil {
		t.Fatal(err)
	}
	for u := range n {
		c := &providers.Connection{Provider: "withings", PatientID: "kb" + strconv.Itoa(u), VendorUserID: killUserID(u),
			Status: providers.StatusActive, Created: time.Now().UTC(),
			Token: &oauth2.Token{AccessToken: "kill-access", RefreshToken: "kill-refresh", TokenType: "Bearer", Expiry: time.Now().Add(30 * 24 * time.Hour)}}
		if err := vault.Save(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
}

// queuedDays opens the data dir (the server must be gone) and returns the patient days that
// have a fetch job, pending or dead-lettered: an acknowledged notification's work.
func queuedDays(t *testing.T, dir string) map[killNote]bool {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{}, nil)
	if err != nil {
		t.Fatalf("reopen the data dir: %v", err)
	}
	defer st.Close()
	pending, err := st.PendingJobs(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := st.DeadJobs(ctx, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[killNote]bool{}
	for _, j := range append(pending, dead...) {
		var w pipeline.Work
		if j.Type != pipeline.TypeFetch || json.Unmarshal(j.Payload, &w) != nil || w.Provider != "withings" {
			continue
		}
		u, err := strconv.Atoi(strings.TrimPrefix(w.Patient, "kb"))
		if err != nil || !strings.HasPrefix(w.Patient, "kb") {
			continue
		}
		// A notification's job reads its whole UTC day (pipeline.Bucket).
		if w.End.Sub(w.Start) != 24*time.Hour || w.Start.Unix()%86400 != 0 {
			t.Errorf("fetch job of %s: window %s – %s, want one UTC day", w.Patient, w.Start, w.End)
			continue
		}
		out[killNote{user: u, day: w.Start.Unix()}] = true
	}
	return out
}

// serveProcess is `ohx serve` running as a child process (the test binary, see serveChildEnv).
type serveProcess struct {
	cmd    *exec.Cmd
	origin string
	exited chan struct{} // closed when the process has exited and its output is read
	tail   *syncWriter   // its log, for failure messages
	done   bool
}

// startChild starts `ohx serve` as a child process with env (and none of the test's own OHX_
// settings) and waits until it listens; it is killed when the test ends if still running.
func startChild(t *testing.T, env map[string]string) *serveProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OHX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, serveChildEnv+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: cmd, exited: make(chan struct{}), tail: &syncWriter{w: &bytes.Buffer{}}}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.tail.Write(append(line, '\n'))
			var l struct{ Msg, Addr string }
			if json.Unmarshal(line, &l) == nil && l.Msg == "ohx serving" && l.Addr != "" {
				select {
				case ready <- l.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.done {
			cmd.Process.Kill()
			<-p.exited
			cmd.Wait()
		}
	})
	select {
	case addr := <-ready:
		p.origin = "http://" + addr
	case <-p.exited:
		cmd.Wait()
		p.done = true
		t.Fatalf("ohx serve exited before listening: %v\n%s", cmd.ProcessState, p.tail.String())
	case <-time.After(time.Minute):
		t.Fatalf("ohx serve did not start:\n%s", p.tail.String())
	}
	return p
}

// kill SIGKILLs the process and waits until it is gone.
func (p *serveProcess) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	err := p.cmd.Wait()
	p.done = true
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the server was not killed by SIGKILL: %v\n%s", err, p.tail.String())
	}
}

// stop asks the process to shut down (SIGTERM) and requires a clean exit.
func (p *serveProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("ohx serve did not stop after SIGTERM:\n%s", p.tail.String())
	}
	err := p.cmd.Wait()
	p.done = true
	if err != nil {
		t.Fatalf("ohx serve after SIGTERM: %v\n%s", err, p.tail.String())
	}
}
