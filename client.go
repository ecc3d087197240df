// Package adfrun starts Azure Data Factory pipeline runs over the REST API,
// with nothing but the standard library.
//
// A Client gets a bearer token from Microsoft Entra ID with the OAuth 2.0
// client credentials grant (RFC 6749 §4.4; the v1 endpoint
// {login}/{tenant}/oauth2/token), proving itself with a client secret, a
// certificate or a federated token, caches it until shortly before it
// expires, and calls the Data Factory REST API (api-version 2018-06-01) on
// Azure Resource Manager:
//
//   - Pipelines - Create Run: Client.CreateRun
//   - Pipeline Runs - Get, Cancel and Query By Factory: Client.GetRun,
//     Client.WaitRun, Client.CancelRun and Client.ListRuns
//
// createRun is not idempotent: every request that Data Factory accepts starts
// a run. A Client therefore never sends createRun again once the request may
// have reached the service; when the outcome cannot be known it returns an
// error that matches ErrOutcomeUnknown.
//
// The code is meant to be read, and may be copied file by file (MIT licence).
package adfrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// apiVersion is the Data Factory REST API version every call uses.
const apiVersion = "2018-06-01"

// defaultTimeout bounds one request, answer included, on the default HTTP client.
const defaultTimeout = 60 * time.Second

// Cloud names the endpoints of one Azure cloud.
type Cloud struct {
	LoginURL      string // Entra ID authority host, e.g. https://login.microsoftonline.com
	ManagementURL string // Resource Manager endpoint, e.g. https://management.azure.com
	Resource      string // token audience sent as resource=, e.g. https://management.azure.com/
}

// The Azure clouds, with the endpoints Microsoft documents for each.
var (
	AzurePublic = Cloud{
		LoginURL:      "https://login.microsoftonline.com",
		ManagementURL: "https://management.azure.com",
		Resource:      "https://management.azure.com/",
	}
	AzureChina = Cloud{
		LoginURL:      "https://login.chinacloudapi.cn",
		ManagementURL: "https://management.chinacloudapi.cn",
		Resource:      "https://management.core.chinacloudapi.cn/",
	}
	AzureGovernment = Cloud{
		LoginURL:      "https://login.microsoftonline.us",
		ManagementURL: "https://management.usgovcloudapi.net",
		Resource:      "https://management.core.usgovcloudapi.net/",
	}
)

// Config says which factory a Client works on and how it signs in.
// Exactly one of ClientSecret, ClientCertificate and FederatedTokenFile is set.
type Config struct {
	TenantID       string // directory (tenant) ID: a GUID or a domain such as contoso.onmicrosoft.com
	ClientID       string // application (client) ID of the app registration
	ClientSecret   string // client secret value
	SubscriptionID string
	ResourceGroup  string
	Factory        string // data factory name

	// ClientCertificate is PEM holding the certificate (the first CERTIFICATE
	// block) and its unencrypted RSA key ("PRIVATE KEY" PKCS #8 or
	// "RSA PRIVATE KEY" PKCS #1). Nil: not used.
	ClientCertificate []byte

	// FederatedTokenFile is the path of a federated token (AKS workload
	// identity sets AZURE_FEDERATED_TOKEN_FILE). The file is read again for
	// every token request, because it rotates. Empty: not used.
	FederatedTokenFile string

	Cloud      Cloud        // zero value: AzurePublic
	HTTPClient *http.Client // nil: a client whose requests time out after 60 s
	Logger     *slog.Logger // nil: no logs
}

// Client starts and follows pipeline runs of one data factory. It is safe
// for concurrent use and should be created once and reused, so that its
// token cache and connections are shared.
type Client struct {
	cfg        Config
	hc         *http.Client
	log        *slog.Logger
	tokenURL   string
	factoryURL string // {ManagementURL}/subscriptions/…/factories/{Factory}
	cert       *certificate

	// Injected by tests; time.Now and sleep otherwise.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu        sync.Mutex // guards tok, fetching and nextRenew
	tok       Token
	fetching  *fetch    // the token request in flight, or nil
	nextRenew time.Time // no early renewal before this, after one failed
}

// New checks cfg and returns a Client. It makes no network call.
func New(cfg Config) (*Client, error) {
	for _, f := range []struct{ name, value string }{
		{"TenantID", cfg.TenantID},
		{"ClientID", cfg.ClientID},
		{"SubscriptionID", cfg.SubscriptionID},
		{"ResourceGroup", cfg.ResourceGroup},
		{"Factory", cfg.Factory},
	} {
		if f.value == "" {
			return nil, fmt.Errorf("adfrun: config: %s is empty", f.name)
		}
	}
	if !isTenant(cfg.TenantID) {
		return nil, fmt.Errorf("adfrun: config: TenantID %q is neither a GUID nor a domain name", cfg.TenantID)
	}
	if cfg.Cloud == (Cloud{}) {
		cfg.Cloud = AzurePublic
	}
	login, err := httpsURL("Cloud.LoginURL", cfg.Cloud.LoginURL)
	if err != nil {
		return nil, err
	}
	management, err := httpsURL("Cloud.ManagementURL", cfg.Cloud.ManagementURL)
	if err != nil {
		return nil, err
	}
	if cfg.Cloud.Resource == "" {
		return nil, errors.New("adfrun: config: Cloud.Resource is empty")
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger,
		tokenURL: login + "/" + cfg.TenantID + "/oauth2/token",
		factoryURL: management + "/subscriptions/" + url.PathEscape(cfg.SubscriptionID) +
			"/resourceGroups/" + url.PathEscape(cfg.ResourceGroup) +
			"/providers/Microsoft.DataFactory/factories/" + url.PathEscape(cfg.Factory),
		now:   time.Now,
		sleep: sleep,
	}
	if c.cert, err = checkCredential(cfg, time.Now()); err != nil {
		return nil, err
	}
	// A copy, so the caller's client is used as given but never changed.
	hc := http.Client{Timeout: defaultTimeout}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	// Never follow a redirect: it could carry the client secret to another host.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	return c, nil
}

// NewFromEnv returns a Client configured from the environment variables the
// Azure SDKs read: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_SUBSCRIPTION_ID,
// AZURE_RESOURCE_GROUP and AZURE_DATA_FACTORY, and one of
// AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH (a PEM file) or
// AZURE_FEDERATED_TOKEN_FILE. It uses the public cloud and the default HTTP
// client; use New for anything else.
func NewFromEnv() (*Client, error) {
	var cfg Config
	for _, v := range []struct {
		name string
		dst  *string
	}{
		{"AZURE_TENANT_ID", &cfg.TenantID},
		{"AZURE_CLIENT_ID", &cfg.ClientID},
		{"AZURE_SUBSCRIPTION_ID", &cfg.SubscriptionID},
		{"AZURE_RESOURCE_GROUP", &cfg.ResourceGroup},
		{"AZURE_DATA_FACTORY", &cfg.Factory},
	} {
		if *v.dst = os.Getenv(v.name); *v.dst == "" {
			return nil, fmt.Errorf("adfrun: environment: %s is not set", v.name)
		}
	}
	var set []string
	if cfg.ClientSecret = os.Getenv("AZURE_CLIENT_SECRET"); cfg.ClientSecret != "" {
		set = append(set, "AZURE_CLIENT_SECRET")
	}
	if path := os.Getenv("AZURE_CLIENT_CERTIFICATE_PATH"); path != "" {
		set = append(set, "AZURE_CLIENT_CERTIFICATE_PATH")
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("adfrun: environment: AZURE_CLIENT_CERTIFICATE_PATH: %w", err)
		}
		cfg.ClientCertificate = pem
	}
	if cfg.FederatedTokenFile = os.Getenv("AZURE_FEDERATED_TOKEN_FILE"); cfg.FederatedTokenFile != "" {
		set = append(set, "AZURE_FEDERATED_TOKEN_FILE")
	}
	switch len(set) {
	case 0:
		return nil, errors.New("adfrun: environment: AZURE_CLIENT_SECRET is not set (nor AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE)")
	case 1:
		return New(cfg)
	}
	return nil, fmt.Errorf("adfrun: environment: set only one of %s", strings.Join(set, ", "))
}

// Format prints the client's factory and identity, never its credentials,
// whatever the verb.
func (c *Client) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "adfrun.Client{%s}", c.cfg.describe())
}

// Format prints the configuration with its credentials left out, whatever
// the verb, so a Config can be logged.
func (cfg Config) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "adfrun.Config{%s}", cfg.describe())
}

// describe names the factory and the identity, and which credential is set.
func (cfg Config) describe() string {
	cred := "none"
	switch {
	case cfg.ClientSecret != "":
		cred = "client secret"
	case cfg.ClientCertificate != nil:
		cred = "certificate"
	case cfg.FederatedTokenFile != "":
		cred = "federated token file " + cfg.FederatedTokenFile
	}
	return fmt.Sprintf("TenantID: %s, ClientID: %s, SubscriptionID: %s, ResourceGroup: %s, Factory: %s, credential: %s",
		cfg.TenantID, cfg.ClientID, cfg.SubscriptionID, cfg.ResourceGroup, cfg.Factory, cred)
}

// isTenant reports whether s is a GUID or a domain name: dot-separated labels
// of letters, digits and '-', so it is always one URL path segment.
func isTenant(s string) bool {
	for _, label := range strings.Split(s, ".") {
		if label == "" || strings.Trim(label, "-") != label {
			return false
		}
		for _, r := range label {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// httpsURL checks that s is an https URL with a host and returns it
// without a trailing slash.
func httpsURL(field, s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("adfrun: config: %s %q is not an https URL", field, s)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// Error is a non-2xx answer from Entra ID or Resource Manager.
type Error struct {
	StatusCode int
	Code       string // Resource Manager error.code, or Entra "error" (e.g. invalid_client)
	Message    string // error.message, or Entra error_description (with its AADSTS code)
	RequestID  string // x-ms-request-id, else Entra correlation_id

	op string // the call answered: "token", "createRun", …
}

// Error returns a one-line description naming the call, status and code.
func (e *Error) Error() string {
	s := "adfrun: "
	if e.op != "" {
		s += e.op + ": "
	}
	s += strconv.Itoa(e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + strconv.Quote(e.Message)
	}
	if e.RequestID != "" {
		s += " (request ID " + e.RequestID + ")"
	}
	return s
}

// parseError turns a non-2xx answer into an *Error. Both services put
// "error" at the top: Resource Manager as an object {code, message}, Entra
// ID as a string beside error_description and correlation_id.
func parseError(op string, status int, header http.Header, body []byte) *Error {
	e := &Error{op: op, StatusCode: status, RequestID: header.Get("X-Ms-Request-Id")}
	var b struct {
		Error         json.RawMessage `json:"error"`
		Description   string          `json:"error_description"`
		CorrelationID string          `json:"correlation_id"`
	}
	if json.Unmarshal(body, &b) == nil && len(b.Error) > 0 {
		var arm struct{ Code, Message string }
		if json.Unmarshal(b.Error, &e.Code) == nil {
			e.Message = b.Description
		} else if json.Unmarshal(b.Error, &arm) == nil {
			e.Code, e.Message = arm.Code, arm.Message
		}
		if e.RequestID == "" {
			e.RequestID = b.CorrelationID
		}
	}
	if e.Code == "" && e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// Retry limits. A Retry-After longer than maxRetryAfter, or one that ends
// after the caller's deadline, is not waited for: the call returns at once.
const (
	maxAttempts   = 4                      // requests per call, the first included
	backoffBase   = 500 * time.Millisecond // doubled after each attempt, with ±20% jitter
	maxRetryAfter = 30 * time.Second
	maxBody       = 1 << 20 // bytes read from any answer
)

// request is one call to Entra ID or Resource Manager.
type request struct {
	op     string // for logs and errors: "token", "createRun", …
	method string
	url    string
	body   []byte
	form   bool // body is form-encoded, not JSON
	auth   bool // send the cached bearer token; renew it once if Resource Manager rejects it
	once   bool // a second request could repeat an action: resend only what cannot have been processed
}

// response is what send read of an answer.
type response struct {
	header http.Header
	body   []byte
	sent   bool // the whole request may have gone out, so the service may have acted on it
}

// do sends r and returns the body of its 2xx answer. It resends after
// network errors, 408, 429 and 5xx, waiting as Retry-After asks or backing
// off, up to maxAttempts requests and never past ctx's deadline. A 401 for
// an expired or invalid token is sent once more with a new token. A request
// marked once is otherwise resent only after a 429 or when it did not go
// out whole; a 5xx, 408 or lost answer after it went out gives an error
// matching ErrOutcomeUnknown.
func (c *Client) do(ctx context.Context, r *request) ([]byte, error) {
	renewed := false
	for attempt := 1; ; attempt++ {
		var token string
		if r.auth {
			t, err := c.Token(ctx)
			if err != nil {
				return nil, err
			}
			token = t.AccessToken
		}
		res, err := c.send(ctx, r, token)
		if err == nil {
			return res.body, nil
		}
		var e *Error
		status := 0
		if errors.As(err, &e) {
			status = e.StatusCode
		}
		switch {
		case status == http.StatusUnauthorized && r.auth && !renewed &&
			(e.Code == "ExpiredAuthenticationToken" || e.Code == "InvalidAuthenticationToken"):
			renewed = true // a rejected token did nothing: renew it and send once more
			c.dropToken(token)
			c.warn(ctx, r.op, "token rejected, renewing it", err, 0)
			continue
		case r.once && res.sent && (status == 0 || status == http.StatusRequestTimeout || status >= 500):
			return nil, c.outcomeUnknown(ctx, r.op, err)
		case ctx.Err() != nil:
			return nil, err
		case status != 0 && !retryable(status):
			return nil, err // final: the service said no
		}
		wait := backoffBase << (attempt - 1)
		wait += time.Duration((rand.Float64() - 0.5) * 0.4 * float64(wait))
		if d, ok := retryAfter(res.header, c.now()); ok {
			wait = d
		}
		if attempt == maxAttempts || wait > maxRetryAfter {
			return nil, err
		}
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
			return nil, err
		}
		c.warn(ctx, r.op, "retrying", err, wait)
		if werr := c.sleep(ctx, wait); werr != nil {
			return nil, fmt.Errorf("%w; stopped waiting to retry: %w", err, werr)
		}
	}
}

// send makes one request and reads its answer through a bound, leaving the
// connection ready for reuse. A non-2xx answer is returned as an *Error.
func (c *Client) send(ctx context.Context, r *request, token string) (response, error) {
	var res response
	var body *sentBody
	var rc io.ReadCloser
	if r.body != nil {
		body = &sentBody{}
		body.Reset(r.body)
		rc = body
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, rc)
	if err != nil {
		return res, fmt.Errorf("adfrun: %s: %w", r.op, err)
	}
	req.ContentLength = int64(len(r.body))
	if r.form {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		res.sent = body == nil || body.read.Load()
		c.debug(ctx, r, req, 0, "", start, err)
		return res, fmt.Errorf("adfrun: %s: %w", r.op, err)
	}
	res.sent, res.header = true, resp.Header
	lr := io.LimitedReader{R: resp.Body, N: maxBody + 1}
	res.body, err = io.ReadAll(&lr)
	resp.Body.Close()
	id := resp.Header.Get("X-Ms-Request-Id")
	if err == nil && len(res.body) > maxBody {
		err = fmt.Errorf("answer longer than %d bytes", maxBody)
	}
	c.debug(ctx, r, req, resp.StatusCode, id, start, err)
	if err != nil {
		return res, fmt.Errorf("adfrun: %s: reading %d answer (request ID %s): %w", r.op, resp.StatusCode, id, err)
	}
	if resp.StatusCode/100 != 2 {
		return res, parseError(r.op, resp.StatusCode, resp.Header, res.body)
	}
	return res, nil
}

// sentBody is a request body that records whether the transport has read
// all of it. Until it has, the request cannot have reached the service
// whole, so the service cannot have acted on it.
type sentBody struct {
	bytes.Reader
	read atomic.Bool
}

func (b *sentBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if b.Len() == 0 {
		b.read.Store(true)
	}
	return n, err
}

func (b *sentBody) Close() error { return nil }

// retryable reports whether an answer with this status may succeed later:
// 408, 429 and 5xx.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// retryAfter reads how long the service asked to wait: retry-after-ms,
// x-ms-retry-after-ms, or Retry-After in seconds or as an HTTP date.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	for _, k := range []string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if ms, err := strconv.ParseInt(h.Get(k), 10, 64); err == nil && ms >= 0 {
			return time.Duration(ms) * time.Millisecond, true
		}
	}
	v := h.Get("Retry-After")
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// debug logs one request: never its body, nor any header but the request ID.
func (c *Client) debug(ctx context.Context, r *request, req *http.Request, status int, id string, start time.Time, err error) {
	if c.log == nil || !c.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("op", r.op), slog.String("method", r.method), slog.String("path", req.URL.Path),
		slog.Int("status", status), slog.Duration("duration", time.Since(start)), slog.String("request_id", id),
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "adfrun: request", attrs...)
}

// warn logs a decision an operator should know of, with its reason.
func (c *Client) warn(ctx context.Context, op, msg string, err error, wait time.Duration) {
	if c.log == nil {
		return
	}
	c.log.LogAttrs(ctx, slog.LevelWarn, "adfrun: "+msg, slog.String("op", op),
		slog.String("reason", err.Error()), slog.Duration("wait", wait))
}
