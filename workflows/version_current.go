//go:build !chaos_previous

package workflows

// localStepsMax is the newest version of versionLocalSteps this build
// writes: the store's steps as local activities. version_previous.go
// (build tag chaos_previous) holds it back, for make chaos only.
const localStepsMax = 1
