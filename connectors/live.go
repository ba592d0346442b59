package connectors

import (
	"fmt"
	"sync/atomic"
)

// Live is a registry read from a file that can be reloaded while the
// process runs (p2p api and p2p worker reload it on SIGHUP). Readers see
// one whole registry or the next, never a mix; a file that does not
// validate is refused and the current registry stays.
type Live struct {
	path  string
	extra []Partner
	cur   atomic.Pointer[Registry]
}

// OpenLive loads the registry at path, with extra partners (e.g. the dev
// sandbox) added to every version of it.
func OpenLive(path string, extra ...Partner) (*Live, error) {
	l := &Live{path: path, extra: extra}
	if err := l.Reload(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reload reads the file again. On error the current registry is kept.
func (l *Live) Reload() error {
	r, err := LoadRegistry(l.path)
	if err != nil {
		return err
	}
	if len(l.extra) > 0 {
		if r, err = NewRegistry(append(r.Partners(), l.extra...)...); err != nil {
			return fmt.Errorf("connectors: %s: %w", l.path, err)
		}
	}
	l.cur.Store(r)
	return nil
}

// Registry returns the current registry.
func (l *Live) Registry() *Registry { return l.cur.Load() }

// Get returns the partner with id in the current registry.
func (l *Live) Get(id string) (Partner, bool) { return l.Registry().Get(id) }

// Has reports whether id is in the current registry.
func (l *Live) Has(id string) bool { return l.Registry().Has(id) }

// CanPush reports whether the current registry has id with role push.
func (l *Live) CanPush(id string) bool { return l.Registry().CanPush(id) }

// CanPull reports whether the current registry has id with role pull.
func (l *Live) CanPull(id string) bool { return l.Registry().CanPull(id) }

// Partners returns the current registry's partners, sorted by id.
func (l *Live) Partners() []Partner { return l.Registry().Partners() }
