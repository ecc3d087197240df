package adfrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestCreateRunSendsWhatAzureExpects(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	ex := loadExample(t, "Pipelines_CreateRun.json")
	var params map[string]any
	if err := json.Unmarshal(ex.Parameters["parameters"], &params); err != nil {
		t.Fatal(err)
	}

	id, err := c.CreateRun(context.Background(), "myPipeline", &RunOptions{Parameters: params})
	if err != nil {
		t.Fatal(err)
	}
	var want struct{ RunID string }
	json.Unmarshal(ex.Responses["200"].Body, &want)
	if id != want.RunID {
		t.Errorf("run ID = %q, want %q", id, want.RunID)
	}

	f.mu.Lock()
	if len(f.counts) != 2 || f.counts["token"] != 1 || f.counts["createRun"] != 1 {
		t.Errorf("a cold client sent %v, want one token request and one createRun", f.counts)
	}
	f.mu.Unlock()

	tok := f.lastSeen("token")
	if tok.method != "POST" || tok.path != "/"+testTenant+"/oauth2/token" {
		t.Errorf("token request: %s %s", tok.method, tok.path)
	}
	if got := tok.header.Get("Content-Type"); got != "application/x-www-form-urlencoded" {
		t.Errorf("token Content-Type = %q", got)
	}
	form, _ := url.ParseQuery(string(tok.body))
	wantForm := url.Values{
		"grant_type": {"client_credentials"}, "client_id": {testClientID},
		"client_secret": {testSecret}, "resource": {"https://management.azure.com/"},
	}
	if !reflect.DeepEqual(form, wantForm) {
		t.Errorf("token form = %v, want %v", form, wantForm)
	}

	run := f.lastSeen("createRun")
	if run.method != "POST" || run.path != factoryPath+"/pipelines/myPipeline/createRun" {
		t.Errorf("createRun request: %s %s", run.method, run.path)
	}
	if want := (url.Values{"api-version": {"2018-06-01"}}); !reflect.DeepEqual(run.query, want) {
		t.Errorf("createRun query = %v, want %v", run.query, want)
	}
	if got := run.header.Get("Authorization"); got != "Bearer "+tokenPrefix+"1" {
		t.Errorf("Authorization = %q", got)
	}
	if got := run.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("createRun Content-Type = %q", got)
	}
	var body any
	if err := json.Unmarshal(run.body, &body); err != nil || !reflect.DeepEqual(body, any(params)) {
		t.Errorf("createRun body = %s, want the bare parameter map %v", run.body, params)
	}
}

func TestCreateRunOptions(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	for _, tc := range []struct {
		name  string
		opts  *RunOptions
		query url.Values
		body  string
	}{
		{"nil", nil, url.Values{}, "{}"},
		{"empty", &RunOptions{}, url.Values{}, "{}"},
		{"empty parameters", &RunOptions{Parameters: map[string]any{}}, url.Values{}, "{}"},
		{"all", &RunOptions{
			Parameters:             map[string]any{"n": 1.5, "list": []any{"a&b"}},
			ReferencePipelineRunID: "2f7fdb90-5df1-4b8e-ac2f-064cfa58202b", IsRecovery: true,
			StartActivityName: "Copy data & load", StartFromFailure: true,
		}, url.Values{
			"referencePipelineRunId": {"2f7fdb90-5df1-4b8e-ac2f-064cfa58202b"}, "isRecovery": {"true"},
			"startActivityName": {"Copy data & load"}, "startFromFailure": {"true"},
		}, `{"list":["a\u0026b"],"n":1.5}`},
		{"reference only", &RunOptions{ReferencePipelineRunID: "r1"}, url.Values{"referencePipelineRunId": {"r1"}}, "{}"},
	} {
		if _, err := c.CreateRun(context.Background(), "p", tc.opts); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := f.lastSeen("createRun")
		tc.query.Set("api-version", "2018-06-01")
		if !reflect.DeepEqual(got.query, tc.query) {
			t.Errorf("%s: query = %v, want %v", tc.name, got.query, tc.query)
		}
		if string(got.body) != tc.body {
			t.Errorf("%s: body = %s, want %s", tc.name, got.body, tc.body)
		}
	}
}

func TestNamesAreOnePathSegment(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	const group, pipeline = "rg (prod)", "Copy Sales/2026?x=1#frag"
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.ResourceGroup = group })
	if _, err := c.CreateRun(context.Background(), pipeline, nil); err != nil {
		t.Fatal(err)
	}
	seg := strings.Split(f.lastSeen("createRun").path, "/")
	if len(seg) != 12 {
		t.Fatalf("path has %d segments: %q", len(seg), seg)
	}
	for i, want := range map[int]string{2: testSub, 4: group, 8: testFactory, 10: pipeline, 11: "createRun"} {
		if got, _ := url.PathUnescape(seg[i]); got != want {
			t.Errorf("segment %d = %q, want %q", i, got, want)
		}
	}
}

func TestTokenIsCachedUntilFiveMinutesBeforeExpiry(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	clk := withClock(c, f)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := c.CreateRun(ctx, "p", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("token"); n != 1 {
		t.Fatalf("3 runs made %d token requests, want 1", n)
	}
	tok, _ := c.Token(ctx)
	if want := clk.Now().Add(3599 * time.Second).Truncate(time.Second); !tok.ExpiresOn.Equal(want) {
		t.Errorf("ExpiresOn = %v, want expires_on %v", tok.ExpiresOn, want)
	}

	clk.Add(3599*time.Second - renewBefore - time.Second) // 5 min 1 s left: still fresh
	c.CreateRun(ctx, "p", nil)
	if n := f.count("token"); n != 1 {
		t.Fatalf("with 5m1s left: %d token requests, want 1", n)
	}
	clk.Add(2 * time.Second) // 4 min 59 s left: renewed
	c.CreateRun(ctx, "p", nil)
	eventually(t, "the renewal", func() bool { return f.count("token") == 2 })
	clk.Add(5 * time.Minute) // the old token has expired; the renewed one serves
	if _, err := c.CreateRun(ctx, "p", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.lastSeen("createRun").header.Get("Authorization"); got != "Bearer "+tokenPrefix+"2" {
		t.Errorf("after renewal Authorization = %q, want the second token", got)
	}
}

func TestColdClientMakesOneTokenRequest(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("token", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // let every caller arrive while the request is in flight
		f.token(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.CreateRun(context.Background(), "p", nil)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("token"); n != 1 {
		t.Errorf("64 concurrent callers made %d token requests, want 1", n)
	}
	if n := f.count("createRun"); n != 64 {
		t.Errorf("createRun requests = %d, want 64", n)
	}
}

func TestTokenWaitersAreBoundedByTheirOwnContext(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var calls sync.Mutex
	first := true
	f.handle("token", func(w http.ResponseWriter, r *http.Request) {
		calls.Lock()
		hang := first
		first = false
		calls.Unlock()
		if hang { // hang until the caller gives up
			<-r.Context().Done()
			return
		}
		f.token(w, r)
	})
	c, _ := newTestClient(t, f, nil)

	leader, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	leaderErr := make(chan error)
	go func() {
		_, err := c.Token(leader)
		leaderErr <- err
	}()
	eventually(t, "the first token request", func() bool { return f.count("token") == 1 })

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if _, err := c.Token(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("short waiter: err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("short waiter returned after %v, past its own deadline", d)
	}

	// A waiter with time to spare fetches again once the leader gives up.
	tok, err := c.Token(context.Background())
	if err != nil || tok.AccessToken == "" {
		t.Fatalf("patient waiter: %v", err)
	}
	if err := <-leaderErr; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("leader: err = %v, want DeadlineExceeded", err)
	}
	if n := f.count("token"); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}

func TestParseToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2020, 11, 19, 11, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, body string
		want       time.Time // zero: an error is wanted
	}{
		{"v1, every number a string",
			`{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1605789466","not_before":"1605785566","resource":"https://management.azure.com/","access_token":"eyJ.a.b"}`,
			time.Unix(1605789466, 0)},
		{"expires_on a number", `{"access_token":"eyJ.a.b","expires_on":1605789466}`, time.Unix(1605789466, 0)},
		{"v2, expires_in a number", `{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ.a.b"}`, now.Add(3599 * time.Second)},
		{"only expires_in, a string", `{"access_token":"eyJ.a.b","expires_in":"60"}`, now.Add(time.Minute)},
		{"no access_token", `{"token_type":"Bearer","expires_in":"3599"}`, time.Time{}},
		{"empty access_token", `{"access_token":"","expires_in":"3599"}`, time.Time{}},
		{"expiry not a number", `{"access_token":"eyJ.a.b","expires_in":"soon"}`, time.Time{}},
		{"expiry zero", `{"access_token":"eyJ.a.b","expires_in":"0"}`, time.Time{}},
		{"no expiry", `{"access_token":"eyJ.a.b"}`, time.Time{}},
		{"not JSON", `<html>login</html>`, time.Time{}},
	} {
		tok, err := parseToken([]byte(tc.body), now)
		switch {
		case tc.want.IsZero() && err == nil:
			t.Errorf("%s: no error, token expiring %v", tc.name, tok.ExpiresOn)
		case !tc.want.IsZero() && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case !tc.want.IsZero() && (!tok.ExpiresOn.Equal(tc.want) || tok.AccessToken != "eyJ.a.b"):
			t.Errorf("%s: got %q expiring %v, want expiry %v", tc.name, tok.AccessToken, tok.ExpiresOn, tc.want)
		case err != nil && strings.Contains(err.Error(), "eyJ"):
			t.Errorf("%s: error reveals the token: %v", tc.name, err)
		}
	}
}

func TestServiceErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		op       string // the operation that fails
		h        http.HandlerFunc
		want     Error
		requests int
	}{
		{"wrong secret", "token", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
		}, Error{StatusCode: 401, Code: "invalid_client", Message: "AADSTS7000215: Invalid client secret provided.", RequestID: "a1b2c3d4-0000-4000-8000-000000000001"}, 1},
		{"unknown app", "token", func(w http.ResponseWriter, r *http.Request) {
			entraError(w, 400, "unauthorized_client", "AADSTS700016: Application not found in the directory.")
		}, Error{StatusCode: 400, Code: "unauthorized_client", Message: "AADSTS700016: Application not found in the directory.", RequestID: "a1b2c3d4-0000-4000-8000-000000000001"}, 1},
		{"no role", "createRun", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Ms-Request-Id", "5c2b442b-d360-43ec-9268-f923f88f31fd")
			armError(w, 403, "AuthorizationFailed", "The client does not have authorization to perform action 'Microsoft.DataFactory/factories/pipelines/createrun/action'.")
		}, Error{StatusCode: 403, Code: "AuthorizationFailed", Message: "The client does not have authorization to perform action 'Microsoft.DataFactory/factories/pipelines/createrun/action'.", RequestID: "5c2b442b-d360-43ec-9268-f923f88f31fd"}, 1},
		{"no such factory", "createRun", func(w http.ResponseWriter, r *http.Request) {
			armError(w, 404, "ResourceNotFound", "The Resource 'Microsoft.DataFactory/factories/myFactoryName' was not found.")
		}, Error{StatusCode: 404, Code: "ResourceNotFound", Message: "The Resource 'Microsoft.DataFactory/factories/myFactoryName' was not found.", RequestID: "a1b2c3d4-0000-4000-8000-000000000001"}, 1},
		{"bad reference", "createRun", func(w http.ResponseWriter, r *http.Request) {
			armError(w, 400, "ReferencedPipelineRunNotValid", "The referenced pipeline run is not valid.")
		}, Error{StatusCode: 400, Code: "ReferencedPipelineRunNotValid", Message: "The referenced pipeline run is not valid.", RequestID: "a1b2c3d4-0000-4000-8000-000000000001"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.handle(tc.op, tc.h)
			c, _ := newTestClient(t, f, nil)
			id, err := c.CreateRun(context.Background(), "p", nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("CreateRun = %q, %v; want an *Error", id, err)
			}
			tc.want.op = tc.op
			if *e != tc.want {
				t.Errorf("error = %#v\nwant    %#v", *e, tc.want)
			}
			if id != "" || errors.Is(err, ErrOutcomeUnknown) {
				t.Errorf("a %d answer: id %q, outcome unknown %v; want no run and a known outcome", e.StatusCode, id, errors.Is(err, ErrOutcomeUnknown))
			}
			if n := f.count(tc.op); n != tc.requests {
				t.Errorf("%s requests = %d, want %d (a final answer is not retried)", tc.op, n, tc.requests)
			}
			for _, s := range []string{tc.want.Code, tc.want.RequestID, fmt.Sprint(tc.want.StatusCode), tc.op} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error text %q does not name %q", err, s)
				}
			}
			mustNotContainSecrets(t, "error", err.Error())
		})
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, body string
		header     http.Header
		status     int
		want       Error
	}{
		{"Entra, request ID from correlation_id", `{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'x' not found.","error_codes":[90002],"correlation_id":"c0ffee00-1111"}`,
			http.Header{}, 400, Error{StatusCode: 400, Code: "invalid_tenant", Message: "AADSTS90002: Tenant 'x' not found.", RequestID: "c0ffee00-1111"}},
		{"Resource Manager, nested details", `{"error":{"code":"BadRequest","message":"bad","target":"x","details":[{"error":{"code":"Inner","message":"m"}}]}}`,
			http.Header{"X-Ms-Request-Id": {"r-1"}}, 400, Error{StatusCode: 400, Code: "BadRequest", Message: "bad", RequestID: "r-1"}},
		{"HTML gateway page", `<html><body><h1>502 Bad Gateway</h1></body></html>`,
			http.Header{}, 502, Error{StatusCode: 502, Message: "Bad Gateway"}},
		{"empty body", ``, http.Header{"X-Ms-Request-Id": {"r-2"}}, 503, Error{StatusCode: 503, Message: "Service Unavailable", RequestID: "r-2"}},
		{"JSON without error", `{"value":[]}`, http.Header{}, 404, Error{StatusCode: 404, Message: "Not Found"}},
	} {
		got := parseError("", tc.status, tc.header, []byte(tc.body))
		if *got != tc.want {
			t.Errorf("%s: got %#v\nwant %#v", tc.name, *got, tc.want)
		}
	}
}

func TestContextErrorsAreWrapped(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("token", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	c, _ := newTestClient(t, f, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.CreateRun(ctx, "p", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want one matching context.DeadlineExceeded", err)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	before := f.count("token")
	if _, err := c.CreateRun(done, "p", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want one matching context.Canceled", err)
	}
	if f.count("createRun") != 0 || f.count("token") != before {
		t.Errorf("a cancelled ctx still sent requests")
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // in the error; "" for none
	}{
		{"valid", func(*Config) {}, ""},
		{"domain tenant", func(c *Config) { c.TenantID = "contoso.onmicrosoft.com" }, ""},
		{"no tenant", func(c *Config) { c.TenantID = "" }, "TenantID"},
		{"no client", func(c *Config) { c.ClientID = "" }, "ClientID"},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, "ClientSecret"},
		{"no subscription", func(c *Config) { c.SubscriptionID = "" }, "SubscriptionID"},
		{"no group", func(c *Config) { c.ResourceGroup = "" }, "ResourceGroup"},
		{"no factory", func(c *Config) { c.Factory = "" }, "Factory"},
		{"tenant with a path", func(c *Config) { c.TenantID = "../evil" }, "TenantID"},
		{"tenant with a slash", func(c *Config) { c.TenantID = "a/b" }, "TenantID"},
		{"tenant dots", func(c *Config) { c.TenantID = ".." }, "TenantID"},
		{"tenant query", func(c *Config) { c.TenantID = "t?x=1" }, "TenantID"},
		{"http login", func(c *Config) { c.Cloud.LoginURL = "http://login.microsoftonline.com" }, "Cloud.LoginURL"},
		{"http management", func(c *Config) { c.Cloud.ManagementURL = "http://management.azure.com" }, "Cloud.ManagementURL"},
		{"no management", func(c *Config) { c.Cloud.ManagementURL = "" }, "Cloud.ManagementURL"},
		{"no resource", func(c *Config) { c.Cloud.Resource = "" }, "Cloud.Resource"},
	} {
		cfg := testConfig(f)
		tc.edit(&cfg)
		_, err := New(cfg)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}
	c, err := New(Config{TenantID: testTenant, ClientID: "c", ClientSecret: "s", SubscriptionID: "s", ResourceGroup: "g", Factory: "f"})
	if err != nil || c.tokenURL != "https://login.microsoftonline.com/"+testTenant+"/oauth2/token" ||
		!strings.HasPrefix(c.factoryURL, "https://management.azure.com/subscriptions/") || c.cfg.Cloud.Resource != "https://management.azure.com/" {
		t.Errorf("zero Cloud: %v, token URL %q, factory URL %q; want the public cloud", err, c.tokenURL, c.factoryURL)
	}
}

func TestEmptyPipelineSendsNothing(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	if _, err := c.CreateRun(context.Background(), "", nil); err == nil || !strings.Contains(err.Error(), "pipeline") {
		t.Errorf("err = %v, want one about the pipeline name", err)
	}
	if f.count("token")+f.count("createRun") != 0 {
		t.Error("requests were sent for an empty pipeline name")
	}
}

func TestNewFromEnv(t *testing.T) {
	vars := map[string]string{
		"AZURE_TENANT_ID": testTenant, "AZURE_CLIENT_ID": testClientID, "AZURE_CLIENT_SECRET": testSecret,
		"AZURE_SUBSCRIPTION_ID": testSub, "AZURE_RESOURCE_GROUP": testGroup, "AZURE_DATA_FACTORY": testFactory,
		"AZURE_CLIENT_CERTIFICATE_PATH": "", "AZURE_FEDERATED_TOKEN_FILE": "",
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
	c, err := NewFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.Factory != testFactory || c.cfg.ClientSecret != testSecret || c.cfg.Cloud != AzurePublic {
		t.Errorf("config from the environment: %v", c)
	}
	for _, name := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_DATA_FACTORY"} {
		t.Setenv(name, "")
		if _, err := NewFromEnv(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: err = %v, want one naming it", name, err)
		}
		t.Setenv(name, vars[name])
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("token", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, f.URL+"/elsewhere", http.StatusTemporaryRedirect)
	})
	f.handle("unknown", func(w http.ResponseWriter, r *http.Request) {})
	hc := f.Client()
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.HTTPClient = hc })
	_, err := c.CreateRun(context.Background(), "p", nil)
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 307 {
		t.Errorf("err = %v, want an *Error with status 307", err)
	}
	if n := f.count("unknown"); n != 0 {
		t.Errorf("the redirect was followed: %d requests reached its target", n)
	}
	if hc.CheckRedirect != nil || hc.Timeout != 0 {
		t.Error("New changed the caller's http.Client")
	}
}

// countingTransport counts the requests of a caller's own transport.
type countingTransport struct {
	http.RoundTripper
	mu sync.Mutex
	n  int
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	return t.RoundTripper.RoundTrip(r)
}

func TestCallersHTTPClientIsUsed(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	ct := &countingTransport{RoundTripper: f.Client().Transport}
	c, _ := newTestClient(t, f, func(cfg *Config) { cfg.HTTPClient = &http.Client{Transport: ct} })
	if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
		t.Fatal(err)
	}
	if ct.n != 2 {
		t.Errorf("the caller's transport carried %d requests, want 2", ct.n)
	}
}

func TestDefaultHTTPClientTimesOut(t *testing.T) {
	t.Parallel()
	c, err := New(Config{TenantID: testTenant, ClientID: "c", ClientSecret: "s", SubscriptionID: "s", ResourceGroup: "g", Factory: "f"})
	if err != nil {
		t.Fatal(err)
	}
	if c.hc.Timeout <= 0 || c.hc.Timeout > 2*time.Minute {
		t.Errorf("default client timeout = %v, want a bound of a minute or so", c.hc.Timeout)
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(f)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		mustNotContainSecrets(t, verb+" of *Client", fmt.Sprintf(verb, c))
		mustNotContainSecrets(t, verb+" of Config", fmt.Sprintf(verb, cfg))
		mustNotContainSecrets(t, verb+" of Token", fmt.Sprintf(verb, tok))
	}
	if s := fmt.Sprint(c); !strings.Contains(s, testFactory) {
		t.Errorf("printed client %q does not name its factory", s)
	}
	// Errors after the secret or the token went out.
	f.handle("token", func(w http.ResponseWriter, r *http.Request) {
		entraError(w, 401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
	})
	f.handle("createRun", func(w http.ResponseWriter, r *http.Request) {
		armError(w, 403, "AuthorizationFailed", "no")
	})
	_, err = c.CreateRun(context.Background(), "p", nil)
	mustNotContainSecrets(t, "createRun error", err.Error())
	c.dropToken(tok.AccessToken)
	_, err = c.CreateRun(context.Background(), "p", nil)
	mustNotContainSecrets(t, "token error", err.Error())
	f.Close()
	_, err = c.Token(context.Background())
	mustNotContainSecrets(t, "network error", err.Error())
}

func TestEndlessBodyIsCut(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("createRun", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"runId":"`))
		chunk := []byte(strings.Repeat("a", 32<<10))
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	c, _ := newTestClient(t, f, nil)
	start := time.Now()
	id, err := c.CreateRun(context.Background(), "p", nil)
	if err == nil || id != "" {
		t.Fatalf("CreateRun = %q, %v; want an error", id, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an endless answer took %v to fail", d)
	}
	if !strings.Contains(err.Error(), "longer than") {
		t.Errorf("err = %v, want one about the answer's length", err)
	}
}

func TestConnectionsAreReused(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	for i := 0; i < 40; i++ {
		if _, err := c.CreateRun(context.Background(), "p", nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.conns.Load(); n > 2 {
		t.Errorf("40 runs opened %d connections, want at most 2", n)
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(`{"token_type":"Bearer","expires_in":"3599","expires_on":"1605789466","access_token":"eyJ.a.b"}`))
	f.Add([]byte(`{"expires_in":3599,"access_token":"eyJ.a.b"}`))
	f.Add([]byte(`{"expires_on":"1e3","access_token":"x"}`))
	f.Add([]byte(`null`))
	now := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := parseToken(body, now)
		if err == nil && (tok.AccessToken == "" || !tok.ExpiresOn.After(time.Unix(0, 0))) {
			t.Errorf("accepted %q as %q expiring %v", body, tok.AccessToken, tok.ExpiresOn)
		}
	})
}

func FuzzParseError(f *testing.F) {
	f.Add(400, []byte(`{"error":"invalid_client","error_description":"AADSTS7000215","correlation_id":"c"}`))
	f.Add(403, []byte(`{"error":{"code":"AuthorizationFailed","message":"m"}}`))
	f.Add(502, []byte(`<html>Bad Gateway</html>`))
	f.Add(429, []byte(`{"error":null}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := parseError("createRun", status, http.Header{}, body)
		if e.StatusCode != status || !strings.HasPrefix(e.Error(), "adfrun: createRun: ") {
			t.Errorf("parseError(%d, %q) = %#v", status, body, e)
		}
	})
}
