package activities

import (
	"context"
	"errors"
	"fmt"

	"github.com/p2p-payer/p2p/connectors/bulkdata"
	"github.com/p2p-payer/p2p/fault"
	"github.com/p2p-payer/p2p/internal/egress"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// ImportLimits cap what one import pulls from an old payer, so that a
// partner (or whoever controls its storage) cannot fill our disk: a
// manifest listing more files, a file or a round of files past its bytes,
// fails the import with a validation fault naming the cap, before the data
// reaches the sink. Bytes are counted as received, after any content
// coding.
type ImportLimits struct {
	FileBytes     int64 // one file; 0: DefaultImportFileBytes
	TransferBytes int64 // every file of one kick-off round together; 0: DefaultImportTransferBytes
	Files         int   // output and error files one manifest lists; 0: DefaultImportFiles
}

// Defaults of ImportLimits: far above one member's record (megabytes, a
// few hundred MB for decades of claims), far below a disk.
const (
	DefaultImportFileBytes     = 1 << 30 // 1 GiB
	DefaultImportTransferBytes = 4 << 30 // 4 GiB
	DefaultImportFiles         = 1000
)

// WithDefaults returns l with its zero fields set to the defaults.
func (l ImportLimits) WithDefaults() ImportLimits {
	if l.FileBytes <= 0 {
		l.FileBytes = DefaultImportFileBytes
	}
	if l.TransferBytes <= 0 {
		l.TransferBytes = DefaultImportTransferBytes
	}
	if l.Files <= 0 {
		l.Files = DefaultImportFiles
	}
	return l
}

// Validate reports a negative cap, or a per-file cap above the
// per-transfer one (a typo that makes one of them meaningless).
func (l ImportLimits) Validate() error {
	switch {
	case l.FileBytes < 0 || l.TransferBytes < 0 || l.Files < 0:
		return errors.New("import limits must not be negative (0: the default)")
	case l.FileBytes > 0 && l.TransferBytes > 0 && l.FileBytes > l.TransferBytes:
		return fmt.Errorf("the per-file import cap (%d bytes) is above the per-transfer one (%d bytes)", l.FileBytes, l.TransferBytes)
	}
	return nil
}

// limitError is the fault of an import past cap.
func limitError(typ, partner string, what string) *fault.Error {
	return fault.New(fault.Validation, typ, "partner "+partner+": "+what)
}

// cappedSink holds each file to the per-file cap and all of them to what
// is left of the per-transfer cap.
type cappedSink struct {
	bulkdata.Sink
	partner  string
	fileMax  int64
	totalMax int64 // bytes this download may still add to the round
	total    int64 // the transfer's cap, for the message
}

func (s *cappedSink) Create(resourceType string, n int) (bulkdata.SinkFile, error) {
	f, err := s.Sink.Create(resourceType, n)
	if err != nil {
		return nil, err
	}
	return &cappedFile{SinkFile: f, s: s}, nil
}

type cappedFile struct {
	bulkdata.SinkFile
	s *cappedSink
	n int64
}

func (f *cappedFile) Write(p []byte) (int, error) {
	f.n += int64(len(p))
	switch {
	case f.n > f.s.fileMax:
		return 0, limitError(fault.TypeImportFileTooLarge, f.s.partner, fmt.Sprintf("a file is larger than the %d bytes an import file may be", f.s.fileMax))
	case f.n > f.s.totalMax:
		return 0, limitError(fault.TypeImportTooLarge, f.s.partner, fmt.Sprintf("the files are larger together than the %d bytes an import may be", f.s.total))
	}
	return f.SinkFile.Write(p)
}

// auditRefusal records, when err is an egress refusal or an import cap, its
// event on the transfer's timeline (and so in the audit log): the host
// and reason, or the cap, never a path. It returns the store's error if
// the event cannot be recorded: the caller fails with it, a retryable
// error, so that the next attempt, refused again, records it.
func (e Env) auditRefusal(ctx context.Context, st store.Transfers, transferID, partnerID, op string, round int, err error, limits ImportLimits) error {
	var ev transfer.Event
	if r, ok := egress.Refused(err); ok {
		ev = transfer.EgressRefused(transfer.EgressRefusedDetail{PartnerID: partnerID, Operation: op, Host: r.Host, Reason: r.Reason})
	} else if f, ok := fault.As(err); ok {
		d := transfer.ImportLimitDetail{PartnerID: partnerID, Limit: f.Type, Round: round}
		switch f.Type {
		case fault.TypeImportFileTooLarge:
			d.Cap = limits.FileBytes
		case fault.TypeImportTooLarge:
			d.Cap = limits.TransferBytes
		case fault.TypeImportTooManyFiles:
			d.Cap = int64(limits.Files)
		default:
			return nil
		}
		ev = transfer.ImportLimit(d)
	} else {
		return nil
	}
	return e.record(ctx, st, transferID, store.Change{Event: ev})
}
