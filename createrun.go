package adfrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
)

// ErrOutcomeUnknown means the run may or may not have been created; look
// before you trigger again. CreateRun returns an error matching it (with
// errors.Is) when the request may have reached Data Factory but no answer
// saying so could be read: a 5xx or 408, a connection lost after the request
// was sent, a timeout while waiting, or a 200 without a run ID. ListRuns
// finds the run if it exists.
var ErrOutcomeUnknown = errors.New("adfrun: outcome unknown: the run may or may not have been created; look before you trigger again")

// RunOptions are the optional parts of a createRun request.
type RunOptions struct {
	Parameters             map[string]any // the request body; nil: no parameters
	ReferencePipelineRunID string         // query referencePipelineRunId, sent only when set
	IsRecovery             bool           // query isRecovery=true, only when true
	StartActivityName      string         // query startActivityName, only when set
	StartFromFailure       bool           // query startFromFailure=true, only when true
}

// CreateRun starts a run of the named pipeline and returns its run ID.
// opts may be nil. It is safe for concurrent use.
//
// createRun is not idempotent, so CreateRun sends it again only when Data
// Factory cannot have acted on it: after a 429 (waiting as Retry-After
// asks), after a 401 for an expired token (once, with a new token), and
// when no connection could be made. When the run may exist but no answer
// says so, the error matches ErrOutcomeUnknown. Other errors are *Error for
// an answer from Entra ID or Resource Manager, or wrap the network or ctx
// error; after them no run was created.
func (c *Client) CreateRun(ctx context.Context, pipeline string, opts *RunOptions) (runID string, err error) {
	if pipeline == "" {
		return "", errors.New("adfrun: createRun: pipeline name is empty")
	}
	if opts == nil {
		opts = &RunOptions{}
	}
	body := []byte("{}")
	if opts.Parameters != nil {
		if body, err = json.Marshal(opts.Parameters); err != nil {
			return "", fmt.Errorf("adfrun: createRun: parameters: %w", err)
		}
	}
	u := c.factoryURL + "/pipelines/" + url.PathEscape(pipeline) + "/createRun?api-version=" + apiVersion
	if opts.ReferencePipelineRunID != "" {
		u += "&referencePipelineRunId=" + url.QueryEscape(opts.ReferencePipelineRunID)
	}
	if opts.IsRecovery {
		u += "&isRecovery=true"
	}
	if opts.StartActivityName != "" {
		u += "&startActivityName=" + url.QueryEscape(opts.StartActivityName)
	}
	if opts.StartFromFailure {
		u += "&startFromFailure=true"
	}
	r := request{op: "createRun", method: "POST", url: u, body: body, auth: true, once: true}
	answer, err := c.do(ctx, &r)
	if err != nil {
		return "", err
	}
	var out struct {
		RunID string `json:"runId"`
	}
	if err := json.Unmarshal(answer, &out); err != nil || out.RunID == "" {
		return "", c.outcomeUnknown(ctx, r.op, errors.New("adfrun: createRun: 200 answer without a run ID"))
	}
	return out.RunID, nil
}

// outcomeUnknown logs and returns err marked with ErrOutcomeUnknown.
func (c *Client) outcomeUnknown(ctx context.Context, op string, err error) error {
	if c.log != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "adfrun: outcome unknown, not sending again", slog.String("op", op), slog.String("reason", err.Error()))
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}
