package workflows

import (
	"errors"
	"fmt"
	"slices"
	"sync"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/connectors"
)

// PartnerTaskQueue is the task queue of the activities that call one
// partner, beside the transfers' queue q. Each partner has its own so that
// a slow or failing partner holds only its own queue: its calls wait
// there, while every other partner's are picked up at once.
func PartnerTaskQueue(q, partnerID string) string { return q + "-partner-" + partnerID }

// Workers is a worker process: the transfers' worker, which runs every
// workflow and the activities on our own systems, and one worker per
// partner for the calls to that partner.
type Workers struct {
	client    client.Client
	taskQueue string
	acts      *activities.Activities
	opts      worker.Options // of the transfers' worker; partners' take Identity and interceptors

	mu      sync.Mutex
	workers []worker.Worker
	queues  []string
	started bool
}

// NewWorkers builds the workers of one process for the transfers' queue
// taskQueue ("" = TaskQueue) and the partners of the registry. o applies
// to the transfers' worker; a partner's worker takes the partner's limits:
// its rate limit is the task queue's, enforced by the Temporal server over
// every worker polling it, and its concurrency is this process's share.
func NewWorkers(c client.Client, taskQueue string, partners []connectors.Partner, acts *activities.Activities, o worker.Options) *Workers {
	if taskQueue == "" {
		taskQueue = TaskQueue
	}
	ws := &Workers{client: c, taskQueue: taskQueue, acts: acts, opts: o}
	ws.add(taskQueue, NewWorker(c, taskQueue, acts, o))
	for _, p := range partners {
		ws.add(PartnerTaskQueue(taskQueue, p.ID), ws.partnerWorker(p))
	}
	return ws
}

func (ws *Workers) partnerWorker(p connectors.Partner) worker.Worker {
	o := ws.opts
	w := worker.New(ws.client, PartnerTaskQueue(ws.taskQueue, p.ID), worker.Options{
		DisableWorkflowWorker:              true,
		TaskQueueActivitiesPerSecond:       p.RateLimit,
		MaxConcurrentActivityExecutionSize: p.Concurrency,
		// A poller per partner is plenty: the partner's limits, not
		// polling, bound its throughput.
		MaxConcurrentActivityTaskPollers: 2,
		Identity:                         o.Identity,
		Interceptors:                     o.Interceptors,
		BackgroundActivityContext:        o.BackgroundActivityContext,
	})
	RegisterPartnerActivities(w, ws.acts)
	return w
}

// Ensure adds and, if the workers run, starts a worker for each partner
// that has none: after the registry is reloaded with new partners. A
// partner whose limits changed keeps its worker until the process
// restarts; a partner removed keeps its worker so that calls already
// scheduled on its queue still finish.
func (ws *Workers) Ensure(partners []connectors.Partner) error {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, p := range partners {
		q := PartnerTaskQueue(ws.taskQueue, p.ID)
		if slices.Contains(ws.queues, q) {
			continue
		}
		w := ws.partnerWorker(p)
		if ws.started {
			if err := w.Start(); err != nil {
				return fmt.Errorf("worker for %s: %w", q, err)
			}
		}
		ws.add(q, w)
	}
	return nil
}

func (ws *Workers) add(q string, w worker.Worker) {
	ws.workers = append(ws.workers, w)
	ws.queues = append(ws.queues, q)
}

// RegisterPartnerActivities registers the activities that talk to a
// partner, and so run on its queue under its limits, on w.
func RegisterPartnerActivities(w worker.ActivityRegistry, acts *activities.Activities) {
	for name, fn := range map[string]any{
		activities.NameSendExport:         acts.SendExport,
		activities.NameMatchAtPartner:     acts.MatchAtPartner,
		activities.NameKickOffImport:      acts.KickOffImport,
		activities.NamePollImport:         acts.PollImport,
		activities.NameDownloadImportFile: acts.DownloadImportFile,
		activities.NameDeleteImport:       acts.DeleteImport,
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
