package adfrun

import (
	"context"
	"os"
	"testing"
	"time"
)

// TestLive starts, reads, finds and cancels a real run. It runs only with
// ADFRUN_LIVE=1, the AZURE_* variables NewFromEnv reads, and
// ADFRUN_LIVE_PIPELINE naming a pipeline that is safe to start.
func TestLive(t *testing.T) {
	pipeline := os.Getenv("ADFRUN_LIVE_PIPELINE")
	if os.Getenv("ADFRUN_LIVE") != "1" || pipeline == "" {
		t.Skip("set ADFRUN_LIVE=1, ADFRUN_LIVE_PIPELINE and the AZURE_* variables to run against Azure")
	}
	c, err := NewFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	since := time.Now().Add(-time.Minute)
	id, err := c.CreateRun(ctx, pipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CancelRun(context.Background(), id, true) })
	run, err := c.GetRun(ctx, id)
	if err != nil || run.ID != id || run.PipelineName != pipeline {
		t.Fatalf("GetRun = %+v, %v", run, err)
	}
	runs, err := c.ListRuns(ctx, pipeline, since)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.ID == id {
			return
		}
	}
	t.Errorf("ListRuns since %v did not find run %s", since, id)
}
