package adfrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Run polling and querying.
const (
	defaultEvery = 15 * time.Second // WaitRun's polling interval when none is given
	queryMargin  = 5 * time.Minute  // ListRuns looks this far past now, for clock skew
	keptFor      = 45 * 24 * time.Hour
)

// Run is one pipeline run as Data Factory reports it.
type Run struct {
	ID           string
	PipelineName string
	Status       string            // Queued, InProgress, Succeeded, Failed, Canceling, Cancelled
	Message      string            // why a run failed, empty otherwise
	Parameters   map[string]string // ADF returns parameter values as strings
	RunStart     time.Time         // zero when absent or null
	RunEnd       time.Time         // zero while running, and null for cancelled runs
	Duration     time.Duration     // from durationInMs; 0 when null
	LastUpdated  time.Time
	RunGroupID   string
}

// Done reports whether the run has ended: Succeeded, Failed, Cancelled or
// Canceled, in any case.
func (r *Run) Done() bool {
	return r.succeeded() || r.ended()
}

func (r *Run) succeeded() bool { return strings.EqualFold(r.Status, "Succeeded") }

// ended reports whether the run ended without succeeding.
func (r *Run) ended() bool {
	for _, s := range []string{"Failed", "Cancelled", "Canceled"} {
		if strings.EqualFold(r.Status, s) {
			return true
		}
	}
	return false
}

// RunError is WaitRun's error when the run ends Failed or Cancelled.
type RunError struct{ Run *Run }

// Error names the run, its status and Data Factory's message.
func (e *RunError) Error() string {
	s := fmt.Sprintf("adfrun: run %s of %q %s", e.Run.ID, e.Run.PipelineName, e.Run.Status)
	if e.Run.Message != "" {
		s += ": " + e.Run.Message
	}
	return s
}

// runJSON is a PipelineRun as Data Factory sends it.
type runJSON struct {
	RunID        string                     `json:"runId"`
	PipelineName string                     `json:"pipelineName"`
	Status       string                     `json:"status"`
	Message      string                     `json:"message"`
	Parameters   map[string]json.RawMessage `json:"parameters"`
	RunStart     string                     `json:"runStart"`
	RunEnd       string                     `json:"runEnd"`
	DurationInMs int64                      `json:"durationInMs"`
	LastUpdated  string                     `json:"lastUpdated"`
	RunGroupID   string                     `json:"runGroupId"`
}

func (j *runJSON) run() (Run, error) {
	r := Run{ID: j.RunID, PipelineName: j.PipelineName, Status: j.Status, Message: j.Message,
		Duration: time.Duration(j.DurationInMs) * time.Millisecond, RunGroupID: j.RunGroupID}
	if j.Parameters != nil {
		r.Parameters = make(map[string]string, len(j.Parameters))
		for k, v := range j.Parameters {
			var s string
			if json.Unmarshal(v, &s) != nil {
				s = string(v) // not a string after all: keep the JSON
			}
			r.Parameters[k] = s
		}
	}
	var err error
	for _, t := range []struct {
		dst *time.Time
		src string
	}{{&r.RunStart, j.RunStart}, {&r.RunEnd, j.RunEnd}, {&r.LastUpdated, j.LastUpdated}} {
		if *t.dst, err = parseTime(t.src); err != nil {
			return r, err
		}
	}
	return r, nil
}

// parseTime reads Data Factory's times: RFC 3339 with up to 7 fractional
// digits, at times without a zone (then UTC); "" for null.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t, err = time.Parse("2006-01-02T15:04:05.999999999", s)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("adfrun: run time %q: %w", s, err)
	}
	return t, nil
}

// runURL is the address of one run.
func (c *Client) runURL(runID string) string {
	return c.factoryURL + "/pipelineruns/" + url.PathEscape(runID)
}

// GetRun returns the run with the given ID. It retries network errors, 408,
// 429 and 5xx. Errors are *Error for an answer from Resource Manager (404
// for an unknown run ID), or wrap the network or ctx error.
func (c *Client) GetRun(ctx context.Context, runID string) (*Run, error) {
	if runID == "" {
		return nil, errors.New("adfrun: getRun: run ID is empty")
	}
	body, err := c.do(ctx, &request{op: "getRun", method: "GET", url: c.runURL(runID) + "?api-version=" + apiVersion, auth: true})
	if err != nil {
		return nil, err
	}
	var j runJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("adfrun: getRun: answer is not a run: %w", err)
	}
	r, err := j.run()
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// CancelRun asks Data Factory to cancel a run and, when recursive is true,
// the pipelines it started. The run then passes through Canceling to
// Cancelled. Errors are as for GetRun.
func (c *Client) CancelRun(ctx context.Context, runID string, recursive bool) error {
	if runID == "" {
		return errors.New("adfrun: cancelRun: run ID is empty")
	}
	u := fmt.Sprintf("%s/cancel?isRecursive=%t&api-version=%s", c.runURL(runID), recursive, apiVersion)
	_, err := c.do(ctx, &request{op: "cancelRun", method: "POST", url: u, auth: true})
	return err
}

// WaitRun polls the run every every (0: 15 s) until it ends, and returns it.
// The error is nil when it Succeeded and a *RunError when it Failed or was
// cancelled. An *Error other than 408, 429 or 5xx (a 403, a 404, a wrong
// secret) stops the wait at once; any other failure is logged and the next
// poll tried. When ctx ends first, WaitRun returns the last run seen (nil
// if none) with an error wrapping ctx's. The token renews itself as needed.
func (c *Client) WaitRun(ctx context.Context, runID string, every time.Duration) (*Run, error) {
	if every <= 0 {
		every = defaultEvery
	}
	var last *Run
	for {
		r, err := c.GetRun(ctx, runID)
		var e *Error
		switch {
		case err == nil && r.succeeded():
			return r, nil
		case err == nil && r.ended():
			return r, &RunError{Run: r}
		case err == nil:
			last = r
		case ctx.Err() != nil:
			return last, err
		case errors.As(err, &e) && !retryable(e.StatusCode):
			return last, err
		default:
			c.warn(ctx, "getRun", "poll failed, polling again", err, every)
		}
		if err := c.sleep(ctx, every); err != nil {
			return last, fmt.Errorf("adfrun: waiting for run %s: %w", runID, err)
		}
	}
}

// ListRuns returns the runs of a pipeline updated since the given time
// (zero: the 45 days Data Factory keeps runs), following every page. Use it
// after ErrOutcomeUnknown to see whether a run was created. Errors are as
// for GetRun, and come with no runs.
func (c *Client) ListRuns(ctx context.Context, pipeline string, since time.Time) ([]Run, error) {
	if pipeline == "" {
		return nil, errors.New("adfrun: queryPipelineRuns: pipeline name is empty")
	}
	now := c.now()
	if since.IsZero() {
		since = now.Add(-keptFor)
	}
	type filter struct {
		Operand  string   `json:"operand"`
		Operator string   `json:"operator"`
		Values   []string `json:"values"`
	}
	query := struct {
		LastUpdatedAfter  string   `json:"lastUpdatedAfter"`
		LastUpdatedBefore string   `json:"lastUpdatedBefore"`
		Filters           []filter `json:"filters"`
		ContinuationToken string   `json:"continuationToken,omitempty"`
	}{
		LastUpdatedAfter:  since.UTC().Format(time.RFC3339Nano),
		LastUpdatedBefore: now.Add(queryMargin).UTC().Format(time.RFC3339Nano),
		Filters:           []filter{{"PipelineName", "Equals", []string{pipeline}}},
	}
	var runs []Run
	for {
		body, _ := json.Marshal(query)
		r := request{op: "queryPipelineRuns", method: "POST", url: c.factoryURL + "/queryPipelineRuns?api-version=" + apiVersion, body: body, auth: true}
		answer, err := c.do(ctx, &r)
		if err != nil {
			return nil, err
		}
		var page struct {
			Value             []runJSON `json:"value"`
			ContinuationToken string    `json:"continuationToken"`
		}
		if err := json.Unmarshal(answer, &page); err != nil {
			return nil, fmt.Errorf("adfrun: queryPipelineRuns: answer is not a page of runs: %w", err)
		}
		for _, j := range page.Value {
			run, err := j.run()
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
		}
		if page.ContinuationToken == "" {
			return runs, nil
		}
		query.ContinuationToken = page.ContinuationToken
	}
}
