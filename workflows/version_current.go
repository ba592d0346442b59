//go:build !chaos_previous

package workflows

// partnerQueuesMax is the newest version of versionPartnerQueues this
// build writes: partner calls on the partner's own task queue.
// version_previous.go (build tag chaos_previous) holds it back, for make
// chaos only.
const partnerQueuesMax = 1
