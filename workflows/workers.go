package workflows

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/audit"
	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/connectors/pdexclient"
	"github.com/p2p-payer/p2p/export"
	"github.com/p2p-payer/p2p/fhir"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/internal/blobstage"
	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/signing"
)

// ActivityDeps are the dependencies of the worker's activities as the
// composition root (package app) hands them over, so that app builds the
// worker without depending on package activities.
type ActivityDeps struct {
	Store    ActivityStore
	Matcher  activities.Matcher  // NewMatcher's
	Partners activities.Partners // a *connectors.Registry or *connectors.Live
	Signer   activities.Signer   // signs export manifests
	// AuditSigner signs audit checkpoints; nil: Signer (one key for
	// everything, tests only).
	AuditSigner activities.Signer
	Source      export.Source // nil: export.SyntheticSource
	// ImportFHIR, when set, is our FHIR server imports write to after the
	// NDJSON directory; nil: the directory only.
	ImportFHIR activities.ImportLoader
	// BulkMatch decides $bulk-member-match members (a *pdex.Matching over
	// Matcher).
	BulkMatch activities.MemberMatcher
	Logger    *zap.Logger
	// PHIRetention: how long PurgePHI keeps ended transfers' export
	// payloads; 0: activities.DefaultPHIRetention.
	PHIRetention time.Duration
	// Transmitter is us as the Provenance of served exports names us.
	Transmitter fhir.Reference
	// ImportBucket holds imports' staged and delivered NDJSON files
	// (P2P_IMPORT_BUCKET or P2P_IMPORT_DIR); nil: imports fail.
	ImportBucket *blobstage.Bucket
	// PayerName, PayerIdentifiers and MemberIDSystem are us as the
	// consents and coverages of our imports name us.
	PayerName        string
	PayerIdentifiers []fhir.Identifier
	MemberIDSystem   string
	// PullTrustHeader is sent, with the partner's auth.client_id, to pull
	// partners with auth none (loopback dev stacks).
	PullTrustHeader string
	// ImportLimits cap what an import pulls; zero fields: the defaults
	// (activities.DefaultImportLimits).
	ImportLimits activities.ImportLimits
	// Resolver resolves partners' host names for the egress checks; nil:
	// the system's (tests map names to addresses to refuse).
	Resolver egress.Resolver
	// AuditWitness, when set, gets a copy of every audit checkpoint the
	// worker signs (P2P_AUDIT_WITNESS).
	AuditWitness audit.Witness
	// CheckpointRefresh: an audit log that has not grown is signed again
	// once its latest checkpoint is this old; 0: only when it grows.
	CheckpointRefresh time.Duration
}

// ActivityStore is what the worker's activities use of the store: the
// roles of every group.
type ActivityStore interface {
	activities.RecorderStore
	activities.TransferStore
	activities.ImportStore
	activities.ServeStore
	activities.BulkMatchStore
	activities.MaintenanceStore
}

// NewMatcher is the identity matcher over the member index of st, shared
// by the worker's activities and the FHIR API of one process; by names the
// process in a model it stores.
func NewMatcher(st activities.MemberIndex, cfg identity.Config, by string, log *zap.Logger) *activities.IndexMatcher {
	return &activities.IndexMatcher{Store: st, Logger: log, Config: cfg, By: by}
}

// Activities are the worker's activity groups, one per workflow family
// (package activities). Temporal registers each group's methods under
// their names.
type Activities struct {
	Recorder    *activities.Recorder
	Transfer    *activities.Transfer
	Import      *activities.Import
	Serve       *activities.Serve
	BulkMatch   *activities.BulkMatch
	Maintenance *activities.Maintenance
}

// groups lists the groups in registration order.
func (acts Activities) groups() []any {
	return []any{acts.Recorder, acts.Transfer, acts.Import, acts.Serve, acts.BulkMatch, acts.Maintenance}
}

// NewActivities assembles the activities of the worker from d: each group
// gets only what it uses.
func NewActivities(d ActivityDeps) Activities {
	src := d.Source
	if src == nil {
		src = export.SyntheticSource{}
	}
	auditSigner := d.AuditSigner
	if auditSigner == nil {
		auditSigner = d.Signer
	}
	env := activities.Env{Logger: d.Logger}
	limits := d.ImportLimits.WithDefaults()
	var keys *signing.RemoteKeys // partners' JWKS, under each one's egress policy
	if l, ok := d.Partners.(interface{ Partners() []connectors.Partner }); ok {
		keys = &signing.RemoteKeys{Egress: connectors.JWKSEgress(l.Partners)}
	}
	return Activities{
		Recorder: &activities.Recorder{Env: env, Store: d.Store},
		Transfer: &activities.Transfer{Env: env, Store: d.Store, Matcher: d.Matcher, Partners: d.Partners,
			Pusher: &connectors.HTTPPusher{Resolver: d.Resolver}, Signer: d.Signer, Source: src, ReceiptKeys: keys},
		Import: &activities.Import{Env: env, Store: d.Store, Partners: d.Partners,
			Pull:   &pdexclient.Dialer{TrustHeader: d.PullTrustHeader, MaxResponseBytes: limits.FileBytes, Resolver: d.Resolver},
			Payer:  activities.Payer{Name: d.PayerName, Identifiers: d.PayerIdentifiers, MemberIDSystem: d.MemberIDSystem},
			Bucket: d.ImportBucket, FHIR: d.ImportFHIR, Limits: limits},
		Serve:     &activities.Serve{Env: env, Store: d.Store, Source: src, Transmitter: d.Transmitter},
		BulkMatch: &activities.BulkMatch{Env: env, Store: d.Store, Matcher: d.BulkMatch},
		Maintenance: &activities.Maintenance{Env: env, Store: d.Store, Signer: auditSigner, PHIRetention: d.PHIRetention,
			Checkpoints:       &audit.Checkpointer{Store: d.Store, Signer: auditSigner, Witness: d.AuditWitness, Log: d.Logger},
			CheckpointRefresh: d.CheckpointRefresh},
	}
}

var _ activities.PullClients = (*pdexclient.Dialer)(nil)

// PartnerTaskQueue is the task queue of the activities that call one
// partner, beside the transfers' queue q. Each partner has its own so that
// a slow or failing partner holds only its own queue: its calls wait
// there, while every other partner's are picked up at once.
func PartnerTaskQueue(q, partnerID string) string { return q + "-partner-" + partnerID }

// PartnerDownloadQueue is the task queue of one partner's import file
// downloads: each may run for hours, so they have their own concurrency
// (the registry's download_concurrency) and never hold the slots that the
// partner's sends, matches and polls need.
func PartnerDownloadQueue(q, partnerID string) string {
	return PartnerTaskQueue(q, partnerID) + "-downloads"
}

// PartnerActivityQueue is the task queue of activity name calling a
// partner: its downloads queue for DownloadImportFile, its own queue for
// the rest. A workflow's choice of queue is not part of what replay
// compares, so running workflows take the new queue from their next
// download on; those scheduled before stay on the partner's queue, whose
// worker still runs them.
func PartnerActivityQueue(q, partnerID, name string) string {
	if name == activities.NameDownloadImportFile {
		return PartnerDownloadQueue(q, partnerID)
	}
	return PartnerTaskQueue(q, partnerID)
}

// Workers is a worker process: the transfers' worker, which runs every
// workflow and the activities on our own systems, and per partner a
// worker for the calls to that partner and one for its downloads.
type Workers struct {
	client    client.Client
	taskQueue string
	acts      Activities
	opts      worker.Options // of the transfers' worker; partners' take Identity, interceptors and the stop timeout

	mu        sync.Mutex
	workers   []worker.Worker
	queues    []string
	started   bool
	schedules []string
}

// NewWorkers builds the workers of one process for the transfers' queue
// taskQueue ("" = TaskQueue) and the partners of the registry. o applies
// to the transfers' worker; a partner's worker takes the partner's limits:
// its rate limit is the task queue's, enforced by the Temporal server over
// every worker polling it, and its concurrency is this process's share.
func NewWorkers(c client.Client, taskQueue string, partners []connectors.Partner, acts Activities, o worker.Options) *Workers {
	if taskQueue == "" {
		taskQueue = TaskQueue
	}
	ws := &Workers{client: c, taskQueue: taskQueue, acts: acts, opts: o}
	transfers := &recorder{Worker: worker.New(c, taskQueue, o)}
	// Every group, on the worker that runs the workflows: local
	// activities (the transfer's steps on our store) run where their
	// workflow task runs, and find their function by name here.
	Register(transfers, acts)
	ws.add(taskQueue, transfers)
	for _, p := range partners {
		ws.addPartner(p)
	}
	return ws
}

// addPartner adds the workers of partner p: its calls', then its
// downloads'.
func (ws *Workers) addPartner(p connectors.Partner) {
	q := PartnerTaskQueue(ws.taskQueue, p.ID)
	ws.add(q, ws.partnerWorker(q, p.RateLimit, p.Concurrency, func(w worker.ActivityRegistry) { RegisterPartnerActivities(w, ws.acts) }))
	dq := PartnerDownloadQueue(ws.taskQueue, p.ID)
	ws.add(dq, ws.partnerWorker(dq, p.RateLimit, p.DownloadConcurrency, func(w worker.ActivityRegistry) {
		w.RegisterActivityWithOptions(ws.acts.Import.DownloadImportFile, activity.RegisterOptions{Name: activities.NameDownloadImportFile})
	}))
}

// partnerWorker is a worker of partner queue q, with the partner's limits
// (partnerOptions).
func (ws *Workers) partnerWorker(q string, rate float64, concurrency int, register func(worker.ActivityRegistry)) worker.Worker {
	w := &recorder{Worker: worker.New(ws.client, q, partnerOptions(ws.opts, rate, concurrency))}
	register(w)
	return w
}

// partnerOptions are the options of a partner queue's worker: activities
// only, rate the queue's limit over every worker (downloads are few, and
// take the partner's rate again, apart from its calls'), concurrency this
// process's share; identity, interceptors and graceful stop from o, the
// transfers' worker's.
func partnerOptions(o worker.Options, rate float64, concurrency int) worker.Options {
	return worker.Options{
		DisableWorkflowWorker:              true,
		TaskQueueActivitiesPerSecond:       rate,
		MaxConcurrentActivityExecutionSize: concurrency,
		// A poller per partner is plenty: the partner's limits, not
		// polling, bound its throughput.
		MaxConcurrentActivityTaskPollers: 2,
		Identity:                         o.Identity,
		Interceptors:                     o.Interceptors,
		BackgroundActivityContext:        o.BackgroundActivityContext,
		WorkerStopTimeout:                o.WorkerStopTimeout,
	}
}

// Ensure adds and, if the workers run, starts the workers of each partner
// that has none: after the registry is reloaded with new partners. A
// partner whose limits changed keeps its workers until the process
// restarts; a partner removed keeps its workers so that calls already
// scheduled on its queues still finish.
func (ws *Workers) Ensure(partners []connectors.Partner) error {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, p := range partners {
		if slices.Contains(ws.queues, PartnerTaskQueue(ws.taskQueue, p.ID)) {
			continue
		}
		first := len(ws.workers)
		ws.addPartner(p)
		if !ws.started {
			continue
		}
		for i := first; i < len(ws.workers); i++ {
			if err := ws.workers[i].Start(); err != nil {
				for _, started := range ws.workers[first:i] {
					started.Stop()
				}
				q := ws.queues[i]
				ws.workers, ws.queues = ws.workers[:first], ws.queues[:first]
				return fmt.Errorf("worker for %s: %w", q, err)
			}
		}
	}
	return nil
}

func (ws *Workers) add(q string, w worker.Worker) {
	ws.workers = append(ws.workers, w)
	ws.queues = append(ws.queues, q)
}

// RegisterPartnerActivities registers the activities that talk to a
// partner, and so run on its queue under its limits, on w. Downloads run
// on the partner's downloads queue (PartnerActivityQueue) and stay here
// for those a workflow scheduled on this queue before they moved.
func RegisterPartnerActivities(w worker.ActivityRegistry, acts Activities) {
	for name, fn := range map[string]any{
		activities.NameSendExport:         acts.Transfer.SendExport,
		activities.NameMatchAtPartner:     acts.Import.MatchAtPartner,
		activities.NameKickOffImport:      acts.Import.KickOffImport,
		activities.NamePollImport:         acts.Import.PollImport,
		activities.NameDownloadImportFile: acts.Import.DownloadImportFile,
		activities.NameDeleteImport:       acts.Import.DeleteImport,
	} {
		w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// Queues returns the task queues polled, the transfers' first.
func (ws *Workers) Queues() []string {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return slices.Clone(ws.queues)
}

// Start starts every worker; if one fails, those started are stopped.
func (ws *Workers) Start() error {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for i, w := range ws.workers {
		if err := w.Start(); err != nil {
			for _, started := range ws.workers[:i] {
				started.Stop()
			}
			return fmt.Errorf("worker for %s: %w", ws.queues[i], err)
		}
	}
	ws.started = true
	return nil
}

// Stop stops every worker, partners' first so that no call to a partner
// is left without the worker that would record its outcome.
func (ws *Workers) Stop() {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.started = false
	for i := len(ws.workers) - 1; i >= 0; i-- {
		ws.workers[i].Stop()
	}
}

// Run starts the workers and blocks until interrupt is closed, then stops
// them.
func (ws *Workers) Run(interrupt <-chan any) error {
	if len(ws.workers) == 0 {
		return errors.New("no workers")
	}
	if err := ws.Start(); err != nil {
		return err
	}
	<-interrupt
	ws.Stop()
	return nil
}

// EnsureSchedules creates or updates the maintenance schedules
// (EnsureSchedules) for the workers' task queue, and remembers them for
// Registered.
func (ws *Workers) EnsureSchedules(ctx context.Context, o ScheduleOptions) error {
	o.TaskQueue = ws.taskQueue
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointInterval
	}
	if o.PurgeEvery <= 0 {
		o.PurgeEvery = DefaultPurgeInterval
	}
	if err := EnsureSchedules(ctx, ws.client, o); err != nil {
		return err
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.schedules = []string{
		fmt.Sprintf("%s on %s every %v", AuditCheckpointScheduleID, o.TaskQueue, o.CheckpointEvery),
		fmt.Sprintf("%s on %s every %v", RetentionPurgeScheduleID, o.TaskQueue, o.PurgeEvery),
	}
	return nil
}

// Registration is what a worker process serves: per task queue, the names
// of the workflows ("workflow NAME") and activities ("activity NAME")
// registered on it; and the maintenance schedules it ensured.
type Registration struct {
	Queues    map[string][]string
	Schedules []string
}

// Registered returns what the workers registered, so that a test can
// check that two ways of building a worker serve the same.
func (ws *Workers) Registered() Registration {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	r := Registration{Queues: map[string][]string{}, Schedules: slices.Clone(ws.schedules)}
	for i, w := range ws.workers {
		if rec, ok := w.(*recorder); ok {
			names := slices.Clone(rec.names)
			sort.Strings(names)
			r.Queues[ws.queues[i]] = names
		}
	}
	return r
}

// recorder is a worker that remembers the names registered on it.
type recorder struct {
	worker.Worker
	names []string
}

func (r *recorder) RegisterWorkflowWithOptions(w any, o workflow.RegisterOptions) {
	r.names = append(r.names, "workflow "+o.Name)
	r.Worker.RegisterWorkflowWithOptions(w, o)
}

func (r *recorder) RegisterActivityWithOptions(a any, o activity.RegisterOptions) {
	r.names = append(r.names, "activity "+o.Name)
	r.Worker.RegisterActivityWithOptions(a, o)
}

// RegisterActivity registers a function under its name or, as p2p does, a
// struct's exported methods under theirs.
func (r *recorder) RegisterActivity(a any) {
	t := reflect.TypeOf(a)
	if t.Kind() == reflect.Func {
		r.names = append(r.names, "activity "+t.String())
	} else {
		for i := range t.NumMethod() {
			r.names = append(r.names, "activity "+t.Method(i).Name)
		}
	}
	r.Worker.RegisterActivity(a)
}
