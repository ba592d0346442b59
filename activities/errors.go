package activities

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/p2p-payer/p2p/connectors"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/store"
)

// appError turns err into the Temporal application error the retry table
// reasons about. The error type comes from the error's class (or its
// business type), so that Policies decides what is retried. Retryable
// failures carry a jittered delay, or the partner's Retry-After exactly.
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
		return temporal.NewApplicationErrorWithOptions(err.Error(), ErrTypeNotFound, temporal.ApplicationErrorOptions{Cause: err})
	}
	typ, retryAfter := ErrTypeTransport, time.Duration(0)
	if f, ok := fault.As(err); ok {
		retryAfter = f.RetryAfter
		switch f.Class {
		case fault.Business:
			typ = f.Type
		case fault.Auth:
			typ = ErrTypeAuth
		case fault.Validation:
			typ = ErrTypeValidation
		case fault.Downstream:
			typ = ErrTypeDownstream
		}
	}
	opts := temporal.ApplicationErrorOptions{Cause: err}
	if fault.ClassOf(err).Retryable() {
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
