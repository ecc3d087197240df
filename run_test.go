package adfrun

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const exampleRunID = "2f7fdb90-5df1-4b8e-ac2f-064cfa58202b"

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// queryRuns returns the runs of Microsoft's Query By Factory example.
func queryRuns(t testing.TB) []json.RawMessage {
	var page struct{ Value []json.RawMessage }
	json.Unmarshal(loadExample(t, "PipelineRuns_QueryByFactory.json").Responses["200"].Body, &page)
	return page.Value
}

// runAnswer answers with Microsoft's Get example, its status replaced.
func runAnswer(t testing.TB, status string) http.HandlerFunc {
	var run map[string]any
	json.Unmarshal(loadExample(t, "PipelineRuns_Get.json").Responses["200"].Body, &run)
	run["status"] = status
	if status == "Failed" {
		run["message"] = "Operation on target Copy failed: the source file does not exist."
	}
	return func(w http.ResponseWriter, r *http.Request) { answer(w, 200, run) }
}

func TestGetRun(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	run, err := c.GetRun(context.Background(), exampleRunID)
	if err != nil {
		t.Fatal(err)
	}
	want := &Run{
		ID: exampleRunID, PipelineName: "myPipeline", Status: "Succeeded",
		Parameters: map[string]string{"OutputBlobNameList": `["exampleoutput.csv"]`},
		RunStart:   mustTime(t, "2018-06-16T00:37:44.6257014Z"),
		RunEnd:     mustTime(t, "2018-06-16T00:38:12.7314495Z"),
		Duration:   28105 * time.Millisecond, LastUpdated: mustTime(t, "2018-06-16T00:38:12.7314495Z"),
	}
	if !reflect.DeepEqual(run, want) {
		t.Errorf("GetRun =\n%+v\nwant\n%+v", run, want)
	}
	s := f.lastSeen("getRun")
	if s.method != "GET" || s.path != factoryPath+"/pipelineruns/"+exampleRunID || s.query.Encode() != "api-version=2018-06-01" {
		t.Errorf("request: %s %s?%s", s.method, s.path, s.query.Encode())
	}
}

func TestGetCancelledRunWithNulls(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	cancelled := queryRuns(t)[1] // "runEnd": null, "durationInMs": null
	f.handle("getRun", func(w http.ResponseWriter, r *http.Request) { w.Write(cancelled) })
	c, _ := newTestClient(t, f, nil)
	run, err := c.GetRun(context.Background(), "16ac5348-ff82-4f95-a80d-638c1d47b721")
	if err != nil {
		t.Fatal(err)
	}
	if !run.RunEnd.IsZero() || run.Duration != 0 || run.Status != "Cancelled" || !run.Done() {
		t.Errorf("cancelled run = %+v, want zero RunEnd and Duration, done", run)
	}
	if want := mustTime(t, "2018-06-16T00:39:51.216097Z"); !run.LastUpdated.Equal(want) {
		t.Errorf("LastUpdated = %v, want %v", run.LastUpdated, want)
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Time{
		"":                             {},
		"2018-06-16T00:37:44.6257014Z": time.Date(2018, 6, 16, 0, 37, 44, 625701400, time.UTC),
		"2018-06-16T00:37:44Z":         time.Date(2018, 6, 16, 0, 37, 44, 0, time.UTC),
		"2018-06-16T00:37:44.6257014":  time.Date(2018, 6, 16, 0, 37, 44, 625701400, time.UTC),
		"2018-06-16T02:37:44.5+02:00":  time.Date(2018, 6, 16, 0, 37, 44, 500000000, time.UTC),
	} {
		if got, err := parseTime(in); err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseTime("yesterday"); err == nil {
		t.Error("parseTime(yesterday): no error")
	}
}

func TestRunDone(t *testing.T) {
	t.Parallel()
	for status, done := range map[string]bool{
		"Queued": false, "InProgress": false, "Canceling": false, "": false,
		"Succeeded": true, "Failed": true, "Cancelled": true, "Canceled": true, "succeeded": true, "CANCELED": true,
	} {
		if got := (&Run{Status: status}).Done(); got != done {
			t.Errorf("Done() for %q = %v, want %v", status, got, done)
		}
	}
}

func TestGetRunErrors(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("getRun", func(w http.ResponseWriter, r *http.Request) {
		armError(w, 404, "ResourceNotFound", "Pipeline run not found.")
	})
	c, _ := newTestClient(t, f, nil)
	_, err := c.GetRun(context.Background(), "no-such-run")
	var e *Error
	if !errors.As(err, &e) || e.StatusCode != 404 || f.count("getRun") != 1 {
		t.Errorf("err = %v after %d requests; want a 404 *Error at once", err, f.count("getRun"))
	}
	f.handle("getRun", answers(runAnswer(t, "InProgress"), status(503), status(500), hangUp))
	run, err := c.GetRun(context.Background(), exampleRunID)
	if err != nil || run.Status != "InProgress" {
		t.Errorf("GetRun after 503, 500 and a dropped connection = %v, %v", run, err)
	}
	f.handle("getRun", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"runId":`)) })
	if _, err := c.GetRun(context.Background(), exampleRunID); err == nil {
		t.Error("a broken answer gave no error")
	}
}

func TestCancelRun(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	c, _ := newTestClient(t, f, nil)
	const id = "16ac5348-ff82-4f95-a80d-638c1d47b721" // PipelineRuns_Cancel.json
	for _, recursive := range []bool{true, false} {
		if err := c.CancelRun(context.Background(), id, recursive); err != nil {
			t.Fatal(err)
		}
		s := f.lastSeen("cancelRun")
		want := url.Values{"isRecursive": {map[bool]string{true: "true", false: "false"}[recursive]}, "api-version": {"2018-06-01"}}
		if s.method != "POST" || s.path != factoryPath+"/pipelineruns/"+id+"/cancel" || !reflect.DeepEqual(s.query, want) {
			t.Errorf("request: %s %s?%v", s.method, s.path, s.query)
		}
	}
	f.handle("cancelRun", func(w http.ResponseWriter, r *http.Request) {
		armError(w, 403, "AuthorizationFailed", "no cancel/action")
	})
	var e *Error
	if err := c.CancelRun(context.Background(), id, true); !errors.As(err, &e) || e.StatusCode != 403 {
		t.Errorf("err = %v, want the 403", err)
	}
}

func TestListRunsFollowsPages(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	runs := queryRuns(t)
	var bodies []map[string]any
	f.handle("queryPipelineRuns", func(w http.ResponseWriter, r *http.Request) {
		var q map[string]any
		json.NewDecoder(r.Body).Decode(&q)
		bodies = append(bodies, q)
		if q["continuationToken"] == nil {
			answer(w, 200, map[string]any{"value": runs[:1], "continuationToken": "+RID:~page2"})
			return
		}
		answer(w, 200, map[string]any{"value": runs[1:]})
	})
	c, _ := newTestClient(t, f, nil)
	clk := withClock(c, f)
	since := time.Date(2018, 6, 16, 0, 36, 44, 334575800, time.UTC)
	got, err := c.ListRuns(context.Background(), "examplePipeline", since)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != exampleRunID || got[1].Status != "Cancelled" {
		t.Fatalf("ListRuns = %+v", got)
	}
	if len(bodies) != 2 || bodies[1]["continuationToken"] != "+RID:~page2" {
		t.Fatalf("query bodies = %v, want two, the second with the continuation token", bodies)
	}
	q := bodies[0]
	before, _ := time.Parse(time.RFC3339Nano, q["lastUpdatedBefore"].(string))
	filters, _ := json.Marshal(q["filters"])
	if q["lastUpdatedAfter"] != "2018-06-16T00:36:44.3345758Z" || before.Before(clk.Now()) || before.After(clk.Now().Add(10*time.Minute)) ||
		string(filters) != `[{"operand":"PipelineName","operator":"Equals","values":["examplePipeline"]}]` {
		t.Errorf("query = %v", q)
	}
	if s := f.lastSeen("queryPipelineRuns"); s.path != factoryPath+"/queryPipelineRuns" || s.header.Get("Content-Type") != "application/json" {
		t.Errorf("request: %s %v", s.path, s.header)
	}
}

func TestWaitRun(t *testing.T) {
	t.Parallel()
	t.Run("succeeds through 503 and 429", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("getRun", answers(runAnswer(t, "Succeeded"),
			runAnswer(t, "Queued"), runAnswer(t, "InProgress"), status(503), status(429, "Retry-After", "3"), runAnswer(t, "InProgress")))
		c, w := newTestClient(t, f, nil)
		run, err := c.WaitRun(context.Background(), exampleRunID, 10*time.Second)
		if err != nil || run.Status != "Succeeded" {
			t.Fatalf("WaitRun = %+v, %v", run, err)
		}
		got := w.all()
		if len(got) != 5 || got[0] != 10*time.Second || got[1] != 10*time.Second || got[3] != 3*time.Second || got[4] != 10*time.Second {
			t.Errorf("waits = %v, want 10s polls and the 429's 3s", got)
		}
	})
	for _, status := range []string{"Failed", "Cancelled", "canceled"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.handle("getRun", answers(runAnswer(t, status), runAnswer(t, "InProgress")))
			c, _ := newTestClient(t, f, nil)
			run, err := c.WaitRun(context.Background(), exampleRunID, 0)
			var re *RunError
			if !errors.As(err, &re) || re.Run != run || run.Status != status {
				t.Fatalf("WaitRun = %+v, %v; want the run and a *RunError", run, err)
			}
			for _, s := range []string{exampleRunID, status, run.Message} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
	for _, code := range []int{403, 404} {
		t.Run("stops at "+http.StatusText(code), func(t *testing.T) {
			t.Parallel()
			f := newFake(t)
			f.handle("getRun", answers(status(code), runAnswer(t, "InProgress")))
			c, w := newTestClient(t, f, nil)
			_, err := c.WaitRun(context.Background(), exampleRunID, time.Second)
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != code || f.count("getRun") != 2 || len(w.all()) != 1 {
				t.Errorf("err = %v after %d polls; want the %d at once", err, f.count("getRun"), code)
			}
		})
	}
	t.Run("default interval", func(t *testing.T) {
		t.Parallel()
		f := newFake(t)
		f.handle("getRun", answers(runAnswer(t, "Succeeded"), runAnswer(t, "Queued")))
		c, w := newTestClient(t, f, nil)
		c.WaitRun(context.Background(), exampleRunID, 0)
		if got := w.all(); len(got) != 1 || got[0] != 15*time.Second {
			t.Errorf("waits = %v, want one of 15s", got)
		}
	})
}

func TestWaitRunDeadline(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.handle("getRun", runAnswer(t, "InProgress"))
	c, _ := newTestClient(t, f, nil)
	c.sleep = sleep
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	run, err := c.WaitRun(ctx, exampleRunID, 50*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if run == nil || run.Status != "InProgress" {
		t.Errorf("run = %+v, want the last one seen", run)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("returned %v after a 300 ms deadline", d)
	}
}

func TestWaitRunRenewsItsToken(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	var polls atomic.Int32
	f.handle("getRun", func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) < 20 {
			runAnswer(t, "InProgress")(w, r)
			return
		}
		runAnswer(t, "Succeeded")(w, r)
	})
	c, _ := newTestClient(t, f, nil)
	clk := withClock(c, f)
	c.sleep = func(ctx context.Context, d time.Duration) error { clk.Add(d); return nil }
	run, err := c.WaitRun(context.Background(), exampleRunID, 15*time.Minute) // a wait of nearly 5 hours
	if err != nil || run.Status != "Succeeded" {
		t.Fatalf("WaitRun = %v, %v", run, err)
	}
	if n := f.count("token"); n < 4 {
		t.Errorf("a wait of 5 hours used %d tokens, want a new one each hour", n)
	}
}
