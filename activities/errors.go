package activities

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/store"
)

// appError turns err into the activity's Temporal application error. Its
// type is the error's own (fault.TypeOf: the type the connector
// classified it with, not_found for what our store does not have), and
// its details carry the class (fault.Class), so that the workflow reads
// the failure exactly as it was classified. The activity itself decides
// what is final: an error whose type or class its row of Policies names
// non-retryable, and a partner error past the partner's attempts, is
// marked NonRetryable, so that a policy recorded before a type was
// renamed never retries it. Retryable failures carry a jittered delay,
// or the partner's Retry-After exactly.
func appError(ctx context.Context, name string, err error) error {
	return partnerAppError(ctx, name, err, nil)
}

// partnerAppError is appError for a call to a partner with its own retry
// settings: its intervals replace the policy's, and once its attempts are
// spent the error is final. The workflow's retry policy stays as recorded;
// the partner's settings act through the activity's answer, so a registry
// change never alters a workflow's history.
func partnerAppError(ctx context.Context, name string, err error, o *connectors.RetryOverride) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrNotFound) {
		return temporal.NewApplicationErrorWithOptions(err.Error(), fault.TypeNotFound,
			temporal.ApplicationErrorOptions{Cause: err, NonRetryable: final(name, "", fault.TypeNotFound)})
	}
	typ, class, retryAfter := fault.TypeOf(err), fault.ClassOf(err), time.Duration(0)
	if f, ok := fault.As(err); ok {
		retryAfter = f.RetryAfter
	}
	opts := temporal.ApplicationErrorOptions{Cause: err, Details: []any{class}, NonRetryable: final(name, class, typ)}
	if class.Retryable() && !opts.NonRetryable {
		attempt := int32(1)
		if activity.IsActivity(ctx) {
			attempt = activity.GetInfo(ctx).Attempt
		}
		if o != nil && o.MaximumAttempts > 0 && attempt >= o.MaximumAttempts {
			opts.NonRetryable = true
		} else {
			opts.NextRetryDelay = retryDelay(name, attempt, retryAfter, o)
		}
	}
	return temporal.NewApplicationErrorWithOptions(err.Error(), typ, opts)
}

// final reports whether the row of activity name in Policies makes an
// error of class and type typ final: it names the type, or the class
// (the type such errors failed with before they kept their own).
func final(name string, class fault.Class, typ string) bool {
	nr := Policies[name].Retry.NonRetryableErrorTypes
	return slices.Contains(nr, typ) || (class != "" && slices.Contains(nr, string(class)))
}

// retryDelay is the exponential backoff of the activity's policy with ±20 %
// jitter, so that many transfers failing together against one partner do
// not retry in lockstep. A partner's Retry-After wins when it is longer.
func retryDelay(name string, attempt int32, retryAfter time.Duration, o *connectors.RetryOverride) time.Duration {
	p := Policies[name].Retry
	if o != nil && o.InitialInterval > 0 {
		p.InitialInterval = o.InitialInterval
	}
	if o != nil && o.MaximumInterval > 0 {
		p.MaximumInterval = o.MaximumInterval
	}
	d := float64(p.InitialInterval)
	for i := int32(1); i < attempt && time.Duration(d) < p.MaximumInterval; i++ {
		d *= p.BackoffCoefficient
	}
	if p.MaximumInterval > 0 && time.Duration(d) > p.MaximumInterval {
		d = float64(p.MaximumInterval)
	}
	d *= 0.8 + 0.4*rand.Float64()
	if retryAfter > time.Duration(d) {
		return retryAfter
	}
	return time.Duration(d)
}
