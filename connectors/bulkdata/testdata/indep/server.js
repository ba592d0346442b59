// An independent Bulk Data export server for connectors/bulkdata's
// TestAgainstFHIRWorks: FHIR Works on AWS's HTTP layer
// (fhir-works-on-aws-routing, Apache-2.0) over in-memory storage.
//
// THEIRS (the npm packages, unmodified): every route and answer of the
// protocol: kick-off (GET [base]/$export and [base]/Group/[id]/$export,
// parameter checks, 202 + Content-Location), status (202 + X-Progress,
// 200 + manifest JSON, 500 on failure), DELETE (202, or 400 once a job is
// complete), error mapping (status codes, OperationOutcome bodies, 429 +
// Retry-After), Content-Type, and the resource types a pass-through
// authorizer allows (stubs.passThroughAuthz).
//
// OURS (this file): what FHIR Works on AWS runs on DynamoDB, Step
// Functions, Glue and S3, which cannot run here: a BulkDataAccess keeping
// jobs in memory with the semantics of fhir-works-on-aws-persistence-ddb
// 3.12.0 (DynamoDbDataService: job fields, defaults, per-user throttle,
// cancel rules, getExportStatus's answer), an export job that writes the
// Group's patient-compartment resources as NDJSON files (their Glue job's
// role), a file store standing in for S3 pre-signed URLs on its own port,
// and an authorizer checking one bearer token.
//
// Usage: node server.js [port] [--watch-stdin]   (port 0 or none: any free port)
// Env:   BULK_TOKEN         if set, the bearer token every FHIR request needs
//        EXPORT_DELAY_MS    how long a job stays in progress (default 1000)
//        FILE_MAX_RESOURCES resources per output file (default 4)
// Prints one JSON line on stdout once listening:
//   {"base":"http://127.0.0.1:P","files":"127.0.0.1:Q"}
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { generateServerlessRouter } = require('fhir-works-on-aws-routing');
const {
  stubs,
  ResourceNotFoundError,
  TooManyConcurrentExportRequestsError,
  UnauthorizedError,
} = require('fhir-works-on-aws-interface');

const port = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) || process.env.PORT || 0);
const token = process.env.BULK_TOKEN || '';
const exportDelayMs = Number(process.env.EXPORT_DELAY_MS || 1000);
const fileMaxResources = Number(process.env.FILE_MAX_RESOURCES || 4);
const seed = JSON.parse(fs.readFileSync(path.join(__dirname, 'seed.json'), 'utf8')).resources;

// ---- OURS: the file store (S3 stand-in) ---------------------------------
// key -> { body, sig }. Like a pre-signed S3 URL, a file is fetched with the
// signature in its query and no Authorization header: S3 refuses a request
// carrying both (400), and so does this store.
const files = new Map();
const fileServer = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  const f = files.get(u.pathname.slice(1));
  if (req.method !== 'GET') {
    res.writeHead(405).end();
  } else if (req.headers.authorization) {
    res.writeHead(400, { 'Content-Type': 'text/plain' }).end('Only one auth mechanism allowed');
  } else if (!f) {
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('NoSuchKey');
  } else if (u.searchParams.get('X-Amz-Signature') !== f.sig) {
    res.writeHead(403, { 'Content-Type': 'text/plain' }).end('SignatureDoesNotMatch');
  } else {
    res.writeHead(200, { 'Content-Type': 'application/fhir+ndjson' }).end(f.body);
  }
});

// ---- OURS: the export job (their Glue job's role) ------------------------
// The Group's members and every resource whose subject, patient or
// beneficiary is one of them; _type and _since filter; one file per
// fileMaxResources resources, named <jobId>/<Type>-<n>.ndjson as their
// getBulkExportResults expects.
function runExport(job) {
  const group = seed.find((r) => r.resourceType === 'Group' && r.id === job.groupId);
  if (job.exportType === 'group' && !group) {
    return { failed: `Group ${job.groupId} was not found` };
  }
  const members = new Set(group ? group.member.map((m) => m.entity.reference) : []);
  const inGroup = (r) =>
    job.exportType !== 'group' ||
    members.has(`${r.resourceType}/${r.id}`) ||
    ['subject', 'patient', 'beneficiary'].some((k) => r[k] && members.has(r[k].reference));
  const types = job.type.split(',');
  const since = Date.parse(job.since);
  const byType = new Map();
  for (const r of seed) {
    if (types.includes(r.resourceType) && Date.parse(r.meta.lastUpdated) > since && inGroup(r)) {
      if (!byType.has(r.resourceType)) byType.set(r.resourceType, []);
      byType.get(r.resourceType).push(r);
    }
  }
  const keys = [];
  for (const [type, rs] of byType) {
    for (let i = 0; i * fileMaxResources < rs.length; i += 1) {
      const key = `${job.jobId}/${type}-${i + 1}.ndjson`;
      const part = rs.slice(i * fileMaxResources, (i + 1) * fileMaxResources);
      files.set(key, { body: part.map((r) => `${JSON.stringify(r)}\n`).join(''), sig: crypto.randomBytes(16).toString('hex') });
      keys.push(key);
    }
  }
  return { keys };
}

// ---- OURS: BulkDataAccess in memory, after DynamoDbDataService ----------
const jobs = new Map();
let filesHost = '';
const bulkDataAccess = {
  async initiateExport(request) {
    // throttleExportRequestsIfNeeded: at most 1 running job per user, 2 in all.
    const running = [...jobs.values()].filter((j) => ['canceling', 'in-progress'].includes(j.jobStatus));
    if (running.filter((j) => j.jobOwnerId === request.requesterUserId).length >= 1 || running.length >= 2) {
      throw new TooManyConcurrentExportRequestsError();
    }
    // buildExportJob
    let type = request.allowedResourceTypes.join(',');
    if (request.type) {
      if (request.type.split(',').some((t) => !request.allowedResourceTypes.includes(t))) {
        throw new UnauthorizedError('User does not have permission for requested resource type.');
      }
      type = request.type;
    }
    const job = {
      jobId: crypto.randomUUID(),
      jobOwnerId: request.requesterUserId,
      exportType: request.exportType,
      groupId: request.groupId || '',
      outputFormat: request.outputFormat || 'ndjson',
      since: request.since || '1800-01-01T00:00:00.000Z',
      type,
      transactionTime: request.transactionTime,
      jobStatus: 'in-progress',
      errorMessage: '',
      keys: [],
    };
    jobs.set(job.jobId, job);
    setTimeout(() => {
      if (job.jobStatus === 'canceling') {
        job.jobStatus = 'canceled';
        return;
      }
      const out = runExport(job);
      if (out.failed) {
        job.jobStatus = 'failed';
        job.errorMessage = out.failed;
      } else {
        job.jobStatus = 'completed';
        job.keys = out.keys;
      }
    }, exportDelayMs);
    return job.jobId;
  },
  async cancelExport(jobId) {
    const job = jobs.get(jobId);
    if (!job) throw new ResourceNotFoundError('$export', jobId);
    if (['completed', 'failed'].includes(job.jobStatus)) {
      throw new Error(`Job cannot be canceled because job is already in ${job.jobStatus} state`);
    }
    if (['canceled', 'canceling'].includes(job.jobStatus)) return;
    job.jobStatus = 'canceling';
  },
  async getExportStatus(jobId) {
    const job = jobs.get(jobId);
    if (!job) throw new ResourceNotFoundError('$export', jobId);
    const done = job.jobStatus === 'completed';
    return {
      jobOwnerId: job.jobOwnerId,
      jobStatus: job.jobStatus,
      // As their default S3 URL generator: pre-signed URLs, no token.
      requiresAccessToken: done ? false : undefined,
      exportedFileUrls: done
        ? job.keys.map((k) => ({
          url: `http://${filesHost}/${k}?X-Amz-Signature=${files.get(k).sig}`,
          type: /\/([A-Za-z]+)-\d+\.ndjson$/.exec(k)[1],
        }))
        : [],
      transactionTime: job.transactionTime,
      exportType: job.exportType,
      outputFormat: job.outputFormat,
      since: job.since,
      type: job.type,
      groupId: job.groupId,
      errorArray: [],
      errorMessage: job.errorMessage,
    };
  },
};

// ---- OURS: authorization (one bearer token; jobs visible to their owner) -
// Everything else is their pass-through authorizer, including the resource
// types a user may export.
const authorization = {
  ...stubs.passThroughAuthz,
  async verifyAccessToken(request) {
    if (token && request.accessToken !== token) {
      throw new UnauthorizedError('Invalid access token');
    }
    return { sub: 'p2p-test-client' };
  },
  async isAccessBulkDataJobAllowed(request) {
    if (request.jobOwnerId !== request.userIdentity.sub) {
      throw new UnauthorizedError('Unauthorized');
    }
  },
};

function fhirConfig(url) {
  return {
    configVersion: 1,
    productInfo: { orgName: 'p2p test harness' },
    auth: { strategy: { service: 'OAuth' }, authorization },
    server: { url },
    profile: {
      fhirVersion: '4.0.1',
      systemOperations: [],
      systemSearch: stubs.search,
      systemHistory: stubs.history,
      bundle: stubs.bundle,
      bulkDataAccess,
    },
    validators: [],
  };
}

// THEIRS: the app, routes and error handling.
const fhirServer = http.createServer();
fileServer.listen(0, '127.0.0.1', () => {
  filesHost = `127.0.0.1:${fileServer.address().port}`;
  fhirServer.listen(port, '127.0.0.1', () => {
    const base = `http://127.0.0.1:${fhirServer.address().port}`;
    fhirServer.on('request', generateServerlessRouter(fhirConfig(base), []));
    process.stdout.write(`${JSON.stringify({ base, files: filesHost })}\n`);
  });
});

// --watch-stdin: exit when stdin closes, so that a test that dies without
// killing us does not leave us running.
if (process.argv.includes('--watch-stdin')) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
