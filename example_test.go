package adfrun_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/adfrun/adfrun"
)

// fakeAzure starts an in-process stand-in for Entra ID and Resource
// Manager that answers as they do (with Microsoft's example run), and
// returns a Config pointing at it.
func fakeAzure() (adfrun.Config, func()) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch p := r.URL.Path; {
		case strings.HasSuffix(p, "/oauth2/token"):
			fmt.Fprintf(w, `{"token_type":"Bearer","expires_in":"3599","expires_on":"%d","access_token":"eyJ0eXAiOiJKV1Qi.e30.sig"}`,
				time.Now().Add(time.Hour).Unix())
		case strings.HasSuffix(p, "/createRun"):
			fmt.Fprint(w, `{"runId":"2f7fdb90-5df1-4b8e-ac2f-064cfa58202b"}`)
		case strings.Contains(p, "/pipelineruns/"):
			fmt.Fprint(w, `{"runId":"2f7fdb90-5df1-4b8e-ac2f-064cfa58202b","pipelineName":"myPipeline",`+
				`"parameters":{"OutputBlobNameList":"[\"exampleoutput.csv\"]"},"runStart":"2018-06-16T00:37:44.6257014Z",`+
				`"runEnd":"2018-06-16T00:38:12.7314495Z","durationInMs":28105,"status":"Succeeded","message":"",`+
				`"lastUpdated":"2018-06-16T00:38:12.7314495Z"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"code":"NotFound","message":"no such resource"}}`)
		}
	}))
	cfg := adfrun.Config{
		TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", ClientID: "11111111-2222-3333-4444-555555555555", ClientSecret: "example-secret",
		SubscriptionID: "12345678-1234-1234-1234-12345678abc", ResourceGroup: "myResourceGroup", Factory: "myFactoryName",
		Cloud:      adfrun.Cloud{LoginURL: srv.URL, ManagementURL: srv.URL, Resource: "https://management.azure.com/"},
		HTTPClient: srv.Client(), // trusts the fake's certificate
	}
	return cfg, srv.Close
}

// Start a pipeline run and print its run ID.
func Example() {
	cfg, stop := fakeAzure() // with Azure: adfrun.NewFromEnv(), or New with your Config
	defer stop()

	c, err := adfrun.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	runID, err := c.CreateRun(context.Background(), "myPipeline", &adfrun.RunOptions{
		Parameters: map[string]any{"OutputBlobNameList": []string{"exampleoutput.csv"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("started run", runID)
	// Output: started run 2f7fdb90-5df1-4b8e-ac2f-064cfa58202b
}

// Trigger a run and wait for it to end.
func ExampleClient_WaitRun() {
	cfg, stop := fakeAzure()
	defer stop()
	c, err := adfrun.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()

	runID, err := c.CreateRun(ctx, "myPipeline", nil)
	if err != nil {
		log.Fatal(err)
	}
	run, err := c.WaitRun(ctx, runID, 30*time.Second)
	var failed *adfrun.RunError
	switch {
	case errors.As(err, &failed):
		log.Fatalf("run %s ended %s: %s", failed.Run.ID, failed.Run.Status, failed.Run.Message)
	case err != nil:
		log.Fatal(err) // gave up waiting; the run goes on
	}
	fmt.Println(run.PipelineName, run.Status, "in", run.Duration)
	// Output: myPipeline Succeeded in 28.105s
}

// Read the configuration from AZURE_* variables, as the Azure SDKs do.
func ExampleNewFromEnv() {
	c, err := adfrun.NewFromEnv()
	if err != nil {
		log.Fatal(err) // names the variable that is missing
	}
	runID, err := c.CreateRun(context.Background(), "copy-sales", &adfrun.RunOptions{
		Parameters: map[string]any{"date": "2026-11-25"},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(runID)
}

// After ErrOutcomeUnknown, look for the run before triggering again.
func ExampleErrOutcomeUnknown() {
	c, err := adfrun.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	before := time.Now().Add(-time.Minute) // a margin for clock skew

	runID, err := c.CreateRun(ctx, "copy-sales", nil)
	if errors.Is(err, adfrun.ErrOutcomeUnknown) {
		runs, lerr := c.ListRuns(ctx, "copy-sales", before)
		if lerr != nil {
			log.Fatal(lerr) // still unknown: do not trigger blindly
		}
		for _, r := range runs {
			if !r.RunStart.Before(before) {
				runID, err = r.ID, nil // it was created; check its parameters if several callers trigger it
			}
		}
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(runID)
}
