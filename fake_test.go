package adfrun

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Test identities. The factory names come from Microsoft's examples.
const (
	testTenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "s3cr3t~Value-That-Must-Never-Print"
	testSub      = "12345678-1234-1234-1234-12345678abc"
	testGroup    = "myResourceGroup"
	testFactory  = "myFactoryName"
	tokenPrefix  = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-token-"
)

// example is one of Microsoft's example files in testdata/.
type example struct {
	Parameters map[string]json.RawMessage
	Responses  map[string]struct {
		Headers map[string]string
		Body    json.RawMessage
	}
}

func loadExample(t testing.TB, name string) example {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var e example
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return e
}

// seen is a request as the fake received it.
type seen struct {
	method, path string // path as sent, still escaped
	query        url.Values
	header       http.Header
	body         []byte
}

// fake is an in-process TLS stand-in for Entra ID and Resource Manager. By
// default it answers the way they do, with Microsoft's examples; a test
// replaces the handler of any operation with handle. It counts every
// request per operation and keeps the last one.
type fake struct {
	*httptest.Server
	t     testing.TB
	clock func() time.Time // for expires_on; time.Now unless set
	conns atomic.Int32     // TCP connections accepted

	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	counts   map[string]int
	last     map[string]seen
	tokens   map[string]bool // issued and accepted by Resource Manager
}

func newFake(t testing.TB) *fake {
	f := &fake{t: t, clock: time.Now, handlers: map[string]http.HandlerFunc{},
		counts: map[string]int{}, last: map[string]seen{}, tokens: map[string]bool{}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	f.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes cut short by tests
	f.StartTLS()
	t.Cleanup(f.Close)
	return f
}

// handle replaces the answer to op: token, createRun, getRun, cancelRun or queryPipelineRuns.
func (f *fake) handle(op string, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[op] = h
}

func (f *fake) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

func (f *fake) lastSeen(op string) seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[op]
}

// factoryPath is the escaped path of the test factory.
const factoryPath = "/subscriptions/" + testSub + "/resourceGroups/" + testGroup +
	"/providers/Microsoft.DataFactory/factories/" + testFactory

// route names the operation a request is for, from its escaped path.
func route(r *http.Request) string {
	p := r.URL.EscapedPath()
	switch {
	case strings.HasSuffix(p, "/oauth2/token"):
		return "token"
	case strings.HasSuffix(p, "/createRun"):
		return "createRun"
	case strings.HasSuffix(p, "/cancel"):
		return "cancelRun"
	case strings.HasSuffix(p, "/queryPipelineRuns"):
		return "queryPipelineRuns"
	case strings.Contains(p, "/pipelineruns/"):
		return "getRun"
	}
	return "unknown"
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	op := route(r)
	f.mu.Lock()
	f.counts[op]++
	f.last[op] = seen{r.Method, r.URL.EscapedPath(), r.URL.Query(), r.Header.Clone(), body}
	h := f.handlers[op]
	accepted := f.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	f.mu.Unlock()
	if op != "token" {
		if !accepted {
			armError(w, 401, "InvalidAuthenticationToken", "The access token is invalid.")
			return
		}
		if v := r.URL.Query().Get("api-version"); v != "2018-06-01" {
			armError(w, 400, "InvalidApiVersionParameter", "The api-version '"+v+"' is invalid.")
			return
		}
	}
	if h != nil {
		h(w, r)
		return
	}
	switch op {
	case "token":
		f.token(w, r)
	case "createRun":
		f.example(w, "Pipelines_CreateRun.json")
	case "getRun":
		f.example(w, "PipelineRuns_Get.json")
	case "cancelRun":
		w.Header().Set("X-Ms-Request-Id", "16ac5348-0000-4f95-a80d-638c1d47b721")
	case "queryPipelineRuns":
		f.example(w, "PipelineRuns_QueryByFactory.json")
	default:
		f.t.Errorf("fake: unexpected request %s %s", r.Method, r.URL)
		armError(w, 404, "NotFound", "no route")
	}
}

// token answers a client credentials request as the v1 endpoint does, every
// number a string, with a new token that Resource Manager will accept.
func (f *fake) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != testClientID {
		entraError(w, 400, "invalid_request", "AADSTS900144: The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if s := r.PostForm.Get("client_secret"); s != "" && s != testSecret {
		entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		return
	}
	tok := f.issue()
	now := f.clock()
	answer(w, 200, map[string]string{
		"token_type": "Bearer", "expires_in": "3599", "ext_expires_in": "3599",
		"expires_on": strconv.FormatInt(now.Add(3599*time.Second).Unix(), 10),
		"not_before": strconv.FormatInt(now.Unix(), 10),
		"resource":   r.PostForm.Get("resource"), "access_token": tok,
	})
}

// issue makes a new token that Resource Manager accepts.
func (f *fake) issue() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := tokenPrefix + strconv.Itoa(len(f.tokens)+1)
	f.tokens[tok] = true
	return tok
}

// revoke makes Resource Manager reject every token issued so far.
func (f *fake) revoke() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.tokens {
		f.tokens[k] = false
	}
}

// example answers with the 200 response of one of Microsoft's examples.
func (f *fake) example(w http.ResponseWriter, name string) {
	resp := loadExample(f.t, name).Responses["200"]
	for k, v := range resp.Headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(resp.Body)
}

// answer writes v as JSON with a request ID, as both services do.
func answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	if w.Header().Get("X-Ms-Request-Id") == "" {
		w.Header().Set("X-Ms-Request-Id", "a1b2c3d4-0000-4000-8000-000000000001")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// armError answers as Resource Manager does.
func armError(w http.ResponseWriter, status int, code, message string) {
	answer(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// entraError answers as Entra ID does: no x-ms-request-id in the body, the
// correlation ID beside the error.
func entraError(w http.ResponseWriter, status int, code, description string) {
	answer(w, status, map[string]any{
		"error": code, "error_description": description, "error_codes": []int{7000215},
		"timestamp": "2026-11-25 02:02:12Z", "trace_id": "0e8f6a4c-0000-4000-8000-00000000aaaa",
		"correlation_id": "c0ffee00-0000-4000-8000-00000000bbbb",
	})
}

// testConfig is a configuration that signs in to f with the test secret.
func testConfig(f *fake) Config {
	return Config{
		TenantID: testTenant, ClientID: testClientID, ClientSecret: testSecret,
		SubscriptionID: testSub, ResourceGroup: testGroup, Factory: testFactory,
		Cloud:      Cloud{LoginURL: f.URL, ManagementURL: f.URL, Resource: "https://management.azure.com/"},
		HTTPClient: f.Client(),
	}
}

// waits records the waits a client asked for, without waiting.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) sleep(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

func (w *waits) all() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.d...)
}

// newTestClient returns a client of f whose retries do not wait; edit
// changes its configuration first.
func newTestClient(t testing.TB, f *fake, edit func(*Config)) (*Client, *waits) {
	t.Helper()
	cfg := testConfig(f)
	if edit != nil {
		edit(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	c.sleep = w.sleep
	return c, w
}

// mustNotContainSecrets fails if s holds the secret or any issued token.
func mustNotContainSecrets(t testing.TB, what, s string) {
	t.Helper()
	if strings.Contains(s, testSecret) || strings.Contains(s, tokenPrefix) || strings.Contains(s, "fake-token") {
		t.Errorf("%s reveals a credential: %s", what, s)
	}
}

// testClock is a clock a test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// withClock makes c and f share a clock that starts now.
func withClock(c *Client, f *fake) *testClock {
	clk := &testClock{t: time.Now()}
	c.now, f.clock = clk.Now, clk.Now
	return clk
}

// eventually waits up to 10 s for cond to hold.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}
