//go:build chaos_previous

package workflows

import "go.temporal.io/sdk/workflow"

// localStepsMax, in a build with the tag chaos_previous, makes the workers
// start transfers in the shape they had before versionLocalSteps (every
// step, RecordState included, a normal activity). It exists for one
// purpose: the fault suite (make chaos, chaos/) runs workers of this
// build, then replaces them mid-run by the normal build, the deploy of a
// workflow code change behind workflow.GetVersion, with transfers in
// flight. No release is built with this tag.
//
// Such a build records the change's marker with DefaultVersion, which the
// normal build replays as "before the change", as it replays a history
// recorded before the GetVersion call existed.
const localStepsMax = workflow.DefaultVersion
