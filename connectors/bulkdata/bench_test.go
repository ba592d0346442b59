package bulkdata

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// benchExportBytes is the size of the benchmark's export: 500 MB.
const benchExportBytes = 500_000_000

// observationPool is a few hundred realistic Observation resources of 1 to
// 2 KB, which the benchmark server cycles through (with fresh ids) to make
// an export of any size without holding it.
func observationPool() []string {
	r := rand.New(rand.NewPCG(1, 2))
	loinc := []struct{ code, display, unit string }{
		{"8867-4", "Heart rate", "/min"}, {"8480-6", "Systolic blood pressure", "mm[Hg]"},
		{"2339-0", "Glucose [Mass/volume] in Blood", "mg/dL"}, {"29463-7", "Body weight", "kg"},
		{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%"},
	}
	pool := make([]string, 256)
	for i := range pool {
		l := loinc[r.IntN(len(loinc))]
		note := strings.Repeat("Patient reports no change since the previous visit. ", r.IntN(17))
		pool[i] = fmt.Sprintf(`{"resourceType":"Observation","id":"%%s","meta":{"lastUpdated":"2025-%02d-%02dT%02d:14:05.123Z","profile":["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"],"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"N"}]},"identifier":[{"system":"urn:oid:2.16.840.1.113883.3.1234.5","value":"obs-%06d"}],"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q,"display":%q}],"text":%q},"subject":{"reference":"Patient/m-%05d"},"encounter":{"reference":"Encounter/e-%07d"},"effectiveDateTime":"2025-%02d-%02dT09:30:00-05:00","issued":"2025-%02d-%02dT12:00:00-05:00","performer":[{"reference":"Organization/lab-%03d","display":"Regional Reference Laboratory"}],"valueQuantity":{"value":%.1f,"unit":%q,"system":"http://unitsofmeasure.org","code":%q},"interpretation":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation","code":"N","display":"Normal"}]}],"note":[{"text":%q}]}`,
			1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(1e6), l.code, l.display, l.display, r.IntN(1e5), r.IntN(1e7),
			1+r.IntN(12), 1+r.IntN(28), 1+r.IntN(12), 1+r.IntN(28), r.IntN(1000), 40+r.Float64()*100, l.unit, l.unit, note)
	}
	return pool
}

// benchLines returns how many lines of the pool, cycled with their ids
// filled in, make at least size bytes, and their exact size.
func benchLines(pool []string, size int64) (n, total int64) {
	for total < size {
		// "%s" becomes a 10-byte id; +1 for the newline.
		total += int64(len(pool[n%int64(len(pool))])-2+10) + 1
		n++
	}
	return n, total
}

// streamObservations writes lines 0..n-1 of the cycled pool to w.
func streamObservations(pool []string, n int64) func(io.Writer) error {
	return func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 64<<10)
		var id [16]byte
		for i := range n {
			line := pool[i%int64(len(pool))]
			// Fill the id in place of %s without fmt: the server must not be
			// the bottleneck.
			j := strings.Index(line, "%s")
			idb := fmt.Appendf(id[:0], "o%09d", i)
			if _, err := bw.WriteString(line[:j]); err != nil {
				return err
			}
			_, _ = bw.Write(idb)
			_, _ = bw.WriteString(line[j+2:])
			if err := bw.WriteByte('\n'); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
}

// peakMemory samples the heap in use (live objects plus unused heap spans)
// and all memory mapped by the Go runtime every few milliseconds until
// stopped, and returns the peaks.
type peakMemory struct {
	stop                chan struct{}
	done                sync.WaitGroup
	heapPeak, totalPeak uint64
}

func startPeakMemory() *peakMemory {
	runtime.GC()
	p := &peakMemory{stop: make(chan struct{})}
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/total:bytes"},
	}
	p.done.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(samples)
			heap := samples[0].Value.Uint64() + samples[1].Value.Uint64()
			p.heapPeak = max(p.heapPeak, heap)
			p.totalPeak = max(p.totalPeak, samples[2].Value.Uint64())
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	})
	return p
}

func (p *peakMemory) Stop() (heapMB, totalMB float64) {
	close(p.stop)
	p.done.Wait()
	return float64(p.heapPeak) / 1e6, float64(p.totalPeak) / 1e6
}

// BenchmarkDownload500MB downloads a 500 MB NDJSON export of ~1-2 KB
// Observations, generated on the fly by the test server (never held in
// memory or written to disk by it), into the discarding sink and into the
// directory sink. It reports MB/s and the peak heap in use and peak memory
// mapped by the Go runtime during the download; both include the test
// server, which runs in the same process.
func BenchmarkDownload500MB(b *testing.B) {
	pool := observationPool()
	n, size := benchLines(pool, benchExportBytes)
	for _, tt := range []struct {
		name string
		sink func(b *testing.B) Sink
	}{
		{"discard", func(*testing.B) Sink { return Discard }},
		{"dir", func(b *testing.B) Sink {
			s, err := NewNDJSONDirSink(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	} {
		b.Run(tt.name, func(b *testing.B) {
			clock := newFakeClock()
			s := newBulkServer(b, clock)
			s.Files = []fakeFile{{Type: "Observation", Stream: streamObservations(pool, n)}}
			c := newTestClient(b, s, clock, nil)
			f := OutputFile{Type: "Observation", URL: s.FileURL(s.Job(), 0), Count: &n}
			sink := tt.sink(b)
			b.SetBytes(size)
			var heapMB, totalMB float64
			for b.Loop() {
				mem := startPeakMemory()
				res, err := c.DownloadTo(context.Background(), f, false, sink, 1)
				h, t := mem.Stop()
				heapMB, totalMB = max(heapMB, h), max(totalMB, t)
				if err != nil {
					b.Fatal(err)
				}
				if res.Bytes != size || res.Resources != n {
					b.Fatalf("downloaded %d bytes, %d resources; want %d, %d", res.Bytes, res.Resources, size, n)
				}
			}
			b.ReportMetric(heapMB, "peak-heap-MB")
			b.ReportMetric(totalMB, "peak-total-MB")
		})
	}
}
