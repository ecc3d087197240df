package adfrun

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks run over an in-memory transport, so they measure the
// client's own work: building the request, adding the token, reading and
// decoding the answer. BenchmarkFloor is the least any client can do: one
// json.Marshal, one request, one decode. Compare:
//
//	go test -run '^$' -bench . -benchmem

var benchParams = map[string]any{"date": "2026-11-25", "rows": 1000}

// memTransport answers like Entra ID and Resource Manager, from memory.
type memTransport struct{ tokens atomic.Int64 }

func (m *memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	body := `{"runId":"2f7fdb90-5df1-4b8e-ac2f-064cfa58202b"}`
	if strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		m.tokens.Add(1)
		exp := strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
		body = `{"token_type":"Bearer","expires_in":"3599","expires_on":"` + exp + `","access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"}`
	}
	h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "X-Ms-Request-Id": {"5c2b442b-d360-43ec-9268-f923f88f31fd"}}
	return &http.Response{StatusCode: 200, Status: "200 OK", Header: h, ContentLength: int64(len(body)),
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func newBenchClient(b *testing.B) (*Client, *memTransport) {
	b.Helper()
	mt := &memTransport{}
	c, err := New(Config{
		TenantID: testTenant, ClientID: testClientID, ClientSecret: testSecret,
		SubscriptionID: testSub, ResourceGroup: testGroup, Factory: testFactory,
		Cloud:      Cloud{LoginURL: "https://fake.test", ManagementURL: "https://fake.test", Resource: "https://management.azure.com/"},
		HTTPClient: &http.Client{Transport: mt},
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Token(context.Background()); err != nil { // warm
		b.Fatal(err)
	}
	return c, mt
}

// BenchmarkFloor: one request built by hand with a token held in a variable.
func BenchmarkFloor(b *testing.B) {
	hc := &http.Client{Transport: &memTransport{}}
	token := "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.e30.sig"
	u := "https://fake.test" + factoryPath + "/pipelines/copy-sales/createRun?api-version=2018-06-01"
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		body, _ := json.Marshal(benchParams)
		req, _ := http.NewRequestWithContext(context.Background(), "POST", u, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var out struct {
			RunID string `json:"runId"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out.RunID == "" {
			b.Fatal("no runId")
		}
	}
}

// BenchmarkCreateRun: one warm CreateRun, the token cached.
func BenchmarkCreateRun(b *testing.B) {
	c, mt := newBenchClient(b)
	opts := &RunOptions{Parameters: benchParams}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if id, err := c.CreateRun(context.Background(), "copy-sales", opts); err != nil || id == "" {
			b.Fatal(id, err)
		}
	}
	if n := mt.tokens.Load(); n != 1 {
		b.Errorf("%d token requests, want 1", n)
	}
}

// BenchmarkCreateRunParallel: warm CreateRun from every core at once; no
// lock is held across a request, so throughput grows with cores.
func BenchmarkCreateRunParallel(b *testing.B) {
	c, _ := newBenchClient(b)
	opts := &RunOptions{Parameters: benchParams}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if id, err := c.CreateRun(context.Background(), "copy-sales", opts); err != nil || id == "" {
				b.Error(id, err)
				return
			}
		}
	})
}

// BenchmarkToken: a cache hit.
func BenchmarkToken(b *testing.B) {
	c, _ := newBenchClient(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Token(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
