package adfrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answers returns a handler that answers the i-th request with steps[i]
// and every later one with next.
func answers(next http.HandlerFunc, steps ...http.HandlerFunc) http.HandlerFunc {
	var n atomic.Int32
	return func(w http.ResponseWriter, r *http.Request) {
		if i := int(n.Add(1)) - 1; i < len(steps) {
			steps[i](w, r)
			return
		}
		next(w, r)
	}
}

// status answers with an Azure error carrying the given headers.
func status(code int, header ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		armError(w, code, http.StatusText(code), "injected")
	}
}

// hangUp reads the request, then closes the connection without a word.
func hangUp(w http.ResponseWriter, r *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestTokenEndpointRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		steps    []http.HandlerFunc
		requests int
		waits    []time.Duration // exact; nil with backoff
		backoff  int             // number of backoff waits
		fails    int             // status of the final error, 0 for success
	}{
		{"503 then token", []http.HandlerFunc{status(503)}, 2, nil, 1, 0},
		{"500, 502, 504 then token", []http.HandlerFunc{status(500), status(502), status(504)}, 4, nil, 3, 0},
		{"408 then token", []http.HandlerFunc{status(408)}, 2, nil, 1, 0},
		{"429 Retry-After seconds", []http.HandlerFunc{status(429, "Retry-After", "2")}, 2, []time.Duration{2 * time.Second}, 0, 0},
		{"retry-after-ms", []http.HandlerFunc{status(503, "Retry-After-Ms", "1500", "Retry-After", "9")}, 2, []time.Duration{1500 * time.Millisecond}, 0, 0},
		{"x-ms-retry-after-ms", []http.HandlerFunc{status(503, "X-Ms-Retry-After-Ms", "250")}, 2, []time.Duration{250 * time.Millisecond}, 0, 0},
		{"connection dropped", []http.HandlerFunc{hangUp}, 2, nil, 1, 0},
		{"503 every time", []http.HandlerFunc{status(503), status(503), status(503), status(503)}, maxAttempts, nil, maxAttempts - 1, 503},
		{"Retry-After past the cap", []http.HandlerFunc{status(429, "Retry-After", "3600")}, 1, nil, 0, 429},
		{"invalid_client is final", []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000222: The provided client secret keys are expired.")
		}}, 1, nil, 0, 401},
		{"invalid_tenant is final", []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "invalid_tenant", "AADSTS90002: Tenant not found.")
		}}, 1, nil, 0, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.handle("token", answers(f.token, tc.steps...))
			c, w := newTestClient(t, f, nil)
			tok, err := c.Token(context.Background())
			var e *Error
			switch {
			case tc.fails == 0 && err != nil:
				t.Fatal(err)
			case tc.fails == 0 && tok.AccessToken == "":
				t.Fatal("no token")
			case tc.fails != 0 && (!errors.As(err, &e) || e.StatusCode != tc.fails):
				t.Fatalf("err = %v, want an *Error with status %d", err, tc.fails)
			}
			if n := f.count("token"); n != tc.requests {
				t.Errorf("token requests = %d, want %d", n, tc.requests)
			}
			got := w.all()
			if tc.waits != nil && !equalDurations(got, tc.waits) {
				t.Errorf("waits = %v, want %v", got, tc.waits)
			}
			if tc.waits == nil {
				checkBackoff(t, got, tc.backoff)
			}
		})
	}
}

func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkBackoff checks n waits that double from backoffBase, within the jitter.
func checkBackoff(t *testing.T, got []time.Duration, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("waits = %v, want %d backoff waits", got, n)
	}
	for i, d := range got {
		base := backoffBase << i
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("wait %d = %v, want %v ±20%%", i+1, d, base)
		}
	}
}

func TestRetryAfterHTTPDate(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, w := newTestClient(t, f, nil)
	clk := withClock(c, f)
	date := clk.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	f.handle("token", answers(f.token, status(429, "Retry-After", date)))
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := w.all(); len(got) != 1 || got[0] <= 2*time.Second || got[0] > 3*time.Second {
		t.Errorf("waits = %v, want one of 2-3 s until %s", got, date)
	}
}

func TestRetriesReallyWait(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("createRun", answers(f.createRunExample, status(429, "Retry-After-Ms", "300")))
	c, _ := newTestClient(t, f, nil)
	c.sleep = sleep
	start := time.Now()
	if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("resent after %v, before Retry-After's 300 ms", d)
	}
}

func (f *fake) createRunExample(w http.ResponseWriter, r *http.Request) {
	f.example(w, "Pipelines_CreateRun.json")
}

// TestCreateRunIsNeverSentTwice: after every failure that may follow an
// accepted request, createRun reaches the service exactly once and the
// error says the outcome is unknown.
func TestCreateRunIsNeverSentTwice(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		h       http.HandlerFunc
		status  int           // of the *Error within, 0 for none
		timeout time.Duration // of the caller's ctx, 0 for none
	}{
		{"500", status(500), 500, 0},
		{"502 HTML page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
		}, 502, 0},
		{"503 with Retry-After", status(503, "Retry-After", "1"), 503, 0},
		{"504", status(504), 504, 0},
		{"408", status(408), 408, 0},
		{"connection closed after the request", hangUp, 0, 0},
		{"answer cut short", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.Write([]byte(`{"runId":"2f7f`))
			w.(http.Flusher).Flush()
			hangUp(w, r)
		}, 0, 0},
		{"200 not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) }, 0, 0},
		{"200 without runId", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"id":"x"}`)) }, 0, 0},
		{"200 empty runId", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"runId":""}`)) }, 0, 0},
		{"no answer before the deadline", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, 0, 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.handle("createRun", tc.h)
			c, w := newTestClient(t, f, nil)
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			id, err := c.CreateRun(ctx, "p", nil)
			if id != "" || !errors.Is(err, ErrOutcomeUnknown) {
				t.Fatalf("CreateRun = %q, %v; want ErrOutcomeUnknown", id, err)
			}
			if n := f.count("createRun"); n != 1 {
				t.Errorf("createRun reached the service %d times, want exactly 1", n)
			}
			if got := w.all(); len(got) != 0 {
				t.Errorf("waited %v to resend", got)
			}
			var e *Error
			if tc.status != 0 && (!errors.As(err, &e) || e.StatusCode != tc.status) {
				t.Errorf("err = %v, want an *Error with status %d within", err, tc.status)
			}
			if tc.timeout > 0 && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want it to match context.DeadlineExceeded too", err)
			}
			mustNotContainSecrets(t, "error", err.Error())
		})
	}
}

func TestCreateRunHTTPClientTimeoutIsUnknown(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("createRun", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.HTTPClient = &http.Client{Transport: f.Client().Transport, Timeout: 300 * time.Millisecond}
	})
	if _, err := c.CreateRun(context.Background(), "p", nil); !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("err = %v, want ErrOutcomeUnknown", err)
	}
	if n := f.count("createRun"); n != 1 {
		t.Errorf("createRun requests = %d, want 1", n)
	}
}

func TestCreateRun429(t *testing.T) {
	t.Parallel()
	t.Run("waits and sends again", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("createRun", answers(f.createRunExample, status(429, "Retry-After", "2"), status(429, "Retry-After", "1")))
		c, w := newTestClient(t, f, nil)
		id, err := c.CreateRun(context.Background(), "p", nil)
		if err != nil || id == "" {
			t.Fatalf("CreateRun = %q, %v", id, err)
		}
		if got, want := w.all(), []time.Duration{2 * time.Second, time.Second}; !equalDurations(got, want) {
			t.Errorf("waits = %v, want %v", got, want)
		}
		if n := f.count("createRun"); n != 3 {
			t.Errorf("createRun requests = %d, want 3", n)
		}
	})
	t.Run("given up is not unknown", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("createRun", status(429, "Retry-After", "1"))
		c, _ := newTestClient(t, f, nil)
		_, err := c.CreateRun(context.Background(), "p", nil)
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 429 || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("err = %v, want a 429 *Error, outcome known", err)
		}
		if n := f.count("createRun"); n != maxAttempts {
			t.Errorf("createRun requests = %d, want %d", n, maxAttempts)
		}
	})
	t.Run("Retry-After past the deadline", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("createRun", status(429, "Retry-After", "5"))
		c, w := newTestClient(t, f, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := c.CreateRun(ctx, "p", nil)
		var e *Error
		if !errors.As(err, &e) || e.StatusCode != 429 {
			t.Errorf("err = %v, want the 429 at once", err)
		}
		if d := time.Since(start); d > time.Second || len(w.all()) != 0 {
			t.Errorf("returned after %v having waited %v; want at once", d, w.all())
		}
	})
}

func TestBackoffStopsAtTheDeadline(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("token", status(503))
	c, w := newTestClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := c.CreateRun(ctx, "p", nil)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 503 {
		t.Errorf("err = %v, want the last 503", err)
	}
	for _, d := range w.all() {
		if d > 700*time.Millisecond {
			t.Errorf("waited %v with 700 ms left", d)
		}
	}
	if n := f.count("token"); n > 2 {
		t.Errorf("token requests = %d, want the ones that fit in 700 ms", n)
	}
}

func TestRejectedTokenIsRenewedOnce(t *testing.T) {
	t.Parallel()
	t.Run("revoked token", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		c, _ := newTestClient(t, f, nil)
		if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
			t.Fatal(err)
		}
		f.revoke() // Resource Manager now answers 401 InvalidAuthenticationToken
		if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
			t.Fatal(err)
		}
		if tok, cr := f.count("token"), f.count("createRun"); tok != 2 || cr != 3 {
			t.Errorf("token requests %d, createRun requests %d; want 2 and 3", tok, cr)
		}
		if got := f.lastSeen("createRun").header.Get("Authorization"); got != "Bearer "+tokenPrefix+"2" {
			t.Errorf("resent with %q, want the new token", got)
		}
	})
	expired := func(w http.ResponseWriter, r *http.Request) {
		armError(w, 401, "ExpiredAuthenticationToken", "The access token expiry UTC time is earlier than current UTC time.")
	}
	t.Run("second 401 is final", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("createRun", expired)
		c, _ := newTestClient(t, f, nil)
		_, err := c.CreateRun(context.Background(), "p", nil)
		var e *Error
		if !errors.As(err, &e) || e.Code != "ExpiredAuthenticationToken" || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("err = %v, want the 401, outcome known", err)
		}
		if tok, cr := f.count("token"), f.count("createRun"); tok != 2 || cr != 2 {
			t.Errorf("token requests %d, createRun requests %d; want 2 and 2", tok, cr)
		}
	})
	t.Run("wrong audience is final at once", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("createRun", func(w http.ResponseWriter, r *http.Request) {
			armError(w, 401, "InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong audience or resource.")
		})
		c, _ := newTestClient(t, f, nil)
		c.CreateRun(context.Background(), "p", nil)
		if tok, cr := f.count("token"), f.count("createRun"); tok != 1 || cr != 1 {
			t.Errorf("token requests %d, createRun requests %d; want 1 and 1", tok, cr)
		}
	})
}

// flakyDialer refuses the next n connections, then connects.
type flakyDialer struct {
	refuse atomic.Int32
	closed string // address of a closed port, for a real "connection refused"
}

func (d *flakyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.refuse.Add(-1) >= 0 {
		addr = d.closed
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func newFlakyClient(t *testing.T, f *fake) (*Client, *waits, *flakyDialer, *http.Transport) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &flakyDialer{closed: l.Addr().String()}
	l.Close()
	tr := f.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	c, w := newTestClient(t, f, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: tr} })
	return c, w, d, tr
}

func TestCreateRunRetriesWhenItCouldNotConnect(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, w, d, tr := newFlakyClient(t, f)
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr.CloseIdleConnections()
	d.refuse.Store(2)
	id, err := c.CreateRun(context.Background(), "p", nil)
	if err != nil || id == "" {
		t.Fatalf("CreateRun = %q, %v", id, err)
	}
	checkBackoff(t, w.all(), 2)
	if n := f.count("createRun"); n != 1 {
		t.Errorf("createRun requests = %d, want 1", n)
	}

	d.refuse.Store(100)
	tr.CloseIdleConnections()
	_, err = c.CreateRun(context.Background(), "p", nil)
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("err = %v, want a connection error, outcome known (nothing was sent)", err)
	}
}

func TestRenewalStallsNobody(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	release := make(chan struct{})
	f.handle("token", answers(func(w http.ResponseWriter, r *http.Request) {
		<-release // a renewal that takes as long as the test wants
		f.token(w, r)
	}, f.token))
	c, _ := newTestClient(t, f, nil)
	clk := withClock(c, f)
	old, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour - 4*time.Minute) // inside the renewal window, still valid

	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("50 runs took %v behind a slow renewal", d)
	}
	if n := f.count("token"); n != 2 {
		t.Errorf("token requests = %d, want 2: the first and one renewal", n)
	}
	if got := f.lastSeen("createRun").header.Get("Authorization"); got != "Bearer "+old.AccessToken {
		t.Errorf("during the renewal Authorization = %q, want the cached token", got)
	}
	close(release)
	eventually(t, "the renewed token", func() bool {
		tok, _ := c.Token(context.Background())
		return tok.AccessToken == tokenPrefix+"2"
	})
}

func TestFailedRenewalCostsNothing(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var logs lockedBuffer
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	clk := withClock(c, f)
	if _, err := c.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.handle("token", status(503))
	clk.Add(time.Hour - 4*time.Minute)

	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
				t.Errorf("CreateRun during a failing renewal: %v", err)
			}
		}()
	}
	wg.Wait()
	eventually(t, "the renewal to fail", func() bool { return strings.Contains(logs.String(), "renewal failed") })
	after := f.count("token")
	if after != 1+maxAttempts {
		t.Errorf("token requests = %d, want 1 and one renewal of %d attempts", after, maxAttempts)
	}

	clk.Add(renewPause - time.Second)
	if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	if n := f.count("token"); n != after {
		t.Errorf("renewal tried again %v after a failure", renewPause-time.Second)
	}
	f.handle("token", f.token)
	clk.Add(2 * time.Second)
	c.CreateRun(context.Background(), "p", nil)
	eventually(t, "the next renewal", func() bool { return f.count("token") == after+1 })
	mustNotContainSecrets(t, "log", logs.String())
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLogs(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("createRun", answers(status(502), status(429, "Retry-After", "2", "X-Ms-Request-Id", "req-429")))
	var logs lockedBuffer
	c, _ := newTestClient(t, f, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	params := &RunOptions{Parameters: map[string]any{"apiKey": "param-value-not-for-logs"}}
	c.CreateRun(context.Background(), "p", params) // 429, then 502: unknown
	type line struct {
		Level, Msg, Op, Method, Path, Reason string
		Status                               int
		Duration, Wait                       time.Duration
		RequestID                            string `json:"request_id"`
	}
	var lines []line
	for _, s := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("log line %q: %v", s, err)
		}
		lines = append(lines, l)
	}
	want := []struct{ level, op string }{
		{"DEBUG", "token"}, {"DEBUG", "createRun"}, {"WARN", "createRun"}, {"DEBUG", "createRun"}, {"WARN", "createRun"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want), logs.String())
	}
	for i, w := range want {
		if lines[i].Level != w.level || lines[i].Op != w.op {
			t.Errorf("line %d: %s %s, want %s %s", i, lines[i].Level, lines[i].Op, w.level, w.op)
		}
	}
	if l := lines[1]; l.Status != 429 || l.RequestID != "req-429" || l.Method != "POST" || !strings.HasSuffix(l.Path, "/pipelines/p/createRun") {
		t.Errorf("attempt line = %+v", l)
	}
	if l := lines[2]; l.Wait != 2*time.Second || !strings.Contains(l.Reason, "429") {
		t.Errorf("retry line = %+v, want the 429 and a 2s wait", l)
	}
	if l := lines[4]; !strings.Contains(l.Msg, "outcome unknown") || !strings.Contains(l.Reason, "502") {
		t.Errorf("last line = %+v, want the outcome unknown", l)
	}
	mustNotContainSecrets(t, "log", logs.String())
	if strings.Contains(logs.String(), "param-value") {
		t.Error("the log holds the request body")
	}
}
