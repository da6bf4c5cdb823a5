// webhook-client posts audit events to a receiver exactly as kube-apiserver's webhook audit
// backend does: the apiserver's own k8s.io/apiserver plugin/pkg/audit/webhook backend (kubeconfig
// loading, TLS and client credentials, EventList encoding, retry with exponential backoff) behind
// plugin/pkg/audit/buffered (batching, throttling, asynchronous delegate), configured with the
// apiserver's defaults unless a flag says otherwise.
//
// It is test infrastructure for kaudit-elk's `serve`: it records which events the receiver
// acknowledged (one "auditID stage" line each in -acked) and prints a JSON summary on stdout.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/apiserver/plugin/pkg/audit/buffered"
	"k8s.io/apiserver/plugin/pkg/audit/webhook"
)

// stats is shared by every sender: what was acknowledged, what failed, how long each batch took.
type stats struct {
	mu        sync.Mutex
	acked     *bufio.Writer
	delivered int
	failed    int
	batches   int
	failures  int
	latencies []time.Duration
}

// recorder sits between the buffered backend and the webhook backend and records the outcome and
// duration of every batch (a batch's duration includes the webhook backend's own retries).
type recorder struct {
	delegate audit.Backend
	st       *stats
	mu       sync.Mutex
	settled  int // events of this sender whose batch finished, delivered or not
}

func (r *recorder) Run(stopCh <-chan struct{}) error { return r.delegate.Run(stopCh) }
func (r *recorder) Shutdown()                        { r.delegate.Shutdown() }
func (r *recorder) String() string                   { return "recorder<" + r.delegate.String() + ">" }

func (r *recorder) ProcessEvents(ev ...*auditinternal.Event) bool {
	start := time.Now()
	ok := r.delegate.ProcessEvents(ev...)
	took := time.Since(start)
	r.mu.Lock()
	r.settled += len(ev)
	r.mu.Unlock()
	st := r.st
	st.mu.Lock()
	defer st.mu.Unlock()
	st.batches++
	if !ok {
		st.failures++
		st.failed += len(ev)
		return ok
	}
	st.delivered += len(ev)
	st.latencies = append(st.latencies, took)
	if st.acked != nil {
		for _, e := range ev {
			fmt.Fprintf(st.acked, "%s %s\n", e.AuditID, e.Stage)
		}
	}
	return ok
}

func (r *recorder) unsettled(produced int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return produced - r.settled
}

func loadTemplates(path string) ([]*auditinternal.Event, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []*auditinternal.Event
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var v1 auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &v1); err != nil || v1.AuditID == "" {
			continue // not an audit event line
		}
		var ev auditinternal.Event
		if err := audit.Scheme.Convert(&v1, &ev, nil); err != nil {
			return nil, fmt.Errorf("%s: convert: %w", path, err)
		}
		out = append(out, &ev)
	}
	return out, sc.Err()
}

func synthetic(i int) *auditinternal.Event {
	now := metav1.NewMicroTime(time.Now())
	node := fmt.Sprintf("node-%d", i%500)
	return &auditinternal.Event{
		Level:      auditinternal.LevelMetadata,
		Stage:      auditinternal.StageResponseComplete,
		RequestURI: "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + node + "?timeout=10s",
		Verb:       "update",
		User: authnv1.UserInfo{Username: "system:node:" + node,
			Groups: []string{"system:nodes", "system:authenticated"}},
		SourceIPs: []string{fmt.Sprintf("10.0.%d.%d", i%250, i%200+1)},
		UserAgent: "kubelet/v1.34.4 (linux/amd64) kubernetes/webhook-client",
		ObjectRef: &auditinternal.ObjectReference{Resource: "leases", Namespace: "kube-node-lease", Name: node,
			APIGroup: "coordination.k8s.io", APIVersion: "v1"},
		ResponseStatus:           &metav1.Status{Code: 200},
		RequestReceivedTimestamp: now,
		StageTimestamp:           now,
		Annotations: map[string]string{"authorization.k8s.io/decision": "allow",
			"authorization.k8s.io/reason": ""},
	}
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "webhook kubeconfig (as --audit-webhook-config-file)")
	events := flag.Int("events", 1000, "events to send")
	rate := flag.Float64("rate", 0, "events/s offered (0: as fast as the buffer takes them)")
	input := flag.String("input", "", "audit log (JSON lines) whose events are used as templates")
	prefix := flag.String("id-prefix", "wc", "auditID prefix (IDs are PREFIX-N)")
	every := flag.Int("two-stage-every", 4, "every Nth request also gets a ResponseStarted event, as long-running requests do (0: never)")
	senders := flag.Int("senders", 1, "independent backends (as many apiservers)")
	acked := flag.String("acked", "", "write one 'auditID stage' line per acknowledged event")
	bufferSize := flag.Int("buffer-size", 10000, "--audit-webhook-batch-buffer-size")
	maxSize := flag.Int("batch-max-size", 400, "--audit-webhook-batch-max-size")
	maxWait := flag.Duration("batch-max-wait", 30*time.Second, "--audit-webhook-batch-max-wait")
	throttle := flag.Bool("throttle", true, "--audit-webhook-batch-throttle-enable")
	qps := flag.Float64("qps", 10, "--audit-webhook-batch-throttle-qps")
	burst := flag.Int("burst", 15, "--audit-webhook-batch-throttle-burst")
	backoff := flag.Duration("initial-backoff", webhook.DefaultInitialBackoffDelay, "--audit-webhook-initial-backoff")
	flag.Parse()
	if *kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "-kubeconfig is required")
		os.Exit(2)
	}

	var templates []*auditinternal.Event
	if *input != "" {
		var err error
		if templates, err = loadTemplates(*input); err != nil || len(templates) == 0 {
			fmt.Fprintf(os.Stderr, "no audit events in %s: %v\n", *input, err)
			os.Exit(2)
		}
	}

	rec := &stats{}
	var ackedFile *os.File
	if *acked != "" {
		var err error
		if ackedFile, err = os.OpenFile(*acked, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		rec.acked = bufio.NewWriter(ackedFile)
	}

	backends := make([]audit.Backend, *senders)
	recorders := make([]*recorder, *senders)
	producedBy := make([]int, *senders)
	stop := make(chan struct{})
	for i := range backends {
		hook, err := webhook.NewBackend(*kubeconfig, auditv1.SchemeGroupVersion,
			webhookutil.DefaultRetryBackoffWithInitialDelay(*backoff), nil)
		if err != nil {
			fmt.Fprintf(os.Stderr, "webhook backend: %v\n", err)
			os.Exit(2)
		}
		recorders[i] = &recorder{delegate: hook, st: rec}
		backends[i] = buffered.NewBackend(recorders[i], buffered.BatchConfig{
			BufferSize: *bufferSize, MaxBatchSize: *maxSize, MaxBatchWait: *maxWait,
			ThrottleEnable: *throttle, ThrottleQPS: float32(*qps), ThrottleBurst: *burst,
			AsyncDelegate: true, // as the apiserver configures its webhook backend
		})
		if err := backends[i].Run(stop); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}

	start := time.Now()
	produced, request := 0, 0
	for produced < *events {
		if *rate > 0 {
			due := time.Duration(float64(produced) / *rate * float64(time.Second))
			if wait := due - time.Since(start); wait > 0 {
				time.Sleep(wait)
			}
		}
		var ev *auditinternal.Event
		if templates != nil {
			ev = templates[request%len(templates)].DeepCopy()
			now := metav1.NewMicroTime(time.Now())
			ev.RequestReceivedTimestamp, ev.StageTimestamp = now, now
		} else {
			ev = synthetic(request)
		}
		ev.AuditID = types.UID(fmt.Sprintf("%s-%d", *prefix, request))
		batch := []*auditinternal.Event{ev}
		if *every > 0 && request%*every == 0 && produced+1 < *events {
			first := ev.DeepCopy()
			first.Stage = auditinternal.StageResponseStarted
			first.ResponseStatus = nil
			batch = []*auditinternal.Event{first, ev}
		}
		k := request % len(backends)
		// The buffer drops what does not fit (as in the apiserver); this load generator waits instead,
		// so that every event it produced is sent (events in flight bound those in the buffer).
		for recorders[k].unsettled(producedBy[k])+len(batch) > *bufferSize {
			time.Sleep(time.Millisecond)
		}
		backends[k].ProcessEvents(batch...)
		producedBy[k] += len(batch)
		produced += len(batch)
		request++
	}
	offered := time.Since(start)
	close(stop)
	for _, b := range backends {
		b.Shutdown()
	}
	elapsed := time.Since(start)
	if rec.acked != nil {
		rec.acked.Flush()
		ackedFile.Close()
	}

	sort.Slice(rec.latencies, func(i, j int) bool { return rec.latencies[i] < rec.latencies[j] })
	pct := func(p float64) float64 {
		if len(rec.latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(rec.latencies)-1))
		return rec.latencies[i].Seconds()
	}
	summary := map[string]any{
		"produced": produced, "delivered": rec.delivered, "failed": rec.failed,
		"batches": rec.batches, "failed_batches": rec.failures,
		"offered_seconds": offered.Seconds(), "elapsed_seconds": elapsed.Seconds(),
		"delivered_per_second": float64(rec.delivered) / elapsed.Seconds(),
		"ack_p50_seconds":      pct(0.50), "ack_p99_seconds": pct(0.99), "ack_max_seconds": pct(1),
	}
	out, _ := json.Marshal(summary)
	fmt.Println(string(out))
	if rec.failed > 0 || rec.delivered != produced {
		os.Exit(1)
	}
}
