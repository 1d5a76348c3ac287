// Prints cron-parser's own answers for Herald's cron vector table as JSON.
// Regenerate (see README.md in this folder):
//   cd "$(mktemp -d)" && npm install cron-parser@5.10.6 && \
//   NODE_PATH="$PWD/node_modules" node <repo>/tests/automation/schedules/cron_vectors/generate.js \
//     > <repo>/tests/automation/schedules/cron_vectors/vectors.json
'use strict';
const { CronExpressionParser } = require('cron-parser');
const version = require('cron-parser/package.json').version;

const N = 5;

// Valid and invalid expressions, each run from every general start in every general zone.
const expressions = [
  '* * * * *', '*/5 * * * *', '0 */2 * * *', '30 9 * * 1-5', '0 0 1 * *', '0 0 L * *',
  '0 12 * * MON,WED,FRI', '0 0 1 JAN,JUL *', '0 0 * * 5#3', '0 0 * * 1L', '0 0 * * 7L',
  '5-10/2 * * * *', '0 0 13 * 5', '0 0 */10 * 1', '0 0 * * 7', '0 0 ? * *', '0 0 ? * MON',
  '@hourly', '@daily', '@weekly', '@monthly', '@yearly', '@annually', '@weekdays', '@weekends',
  '@minutely', '@secondly', '* * * 1 * *', '*/15 * * * * *', '0 30 9 * * 1', '0 0 29 2 *',
  '0 0 31 * *', '0 0 0 * * 0,6', '1,2,3 * * * *', '0 0 1-7 * 1', '0 0 * jan-mar mon',
  '0 9 * * sun', '0 0 */2 * 1', '0 0 13 * */2', '0 0 L * 1', '0 0 1 * 1L', '0 0 1,L * *',
  '0 0 1 * 5#2', '0 0 * * 0-7', '0 0 * * SUN-SAT', '15/15 * * * *', '0-59/15 * * * *',
  '*/90 * * * *', '0 0 * */5 *', '0 0 * * */3', '3-3/2 * * * *', '08 * * * *',
  '0 0 1/10 * *', '0 0 5-25/7 * *', '0 0 30 2 1', '0 0 L 2 *', '0 0 * * 1#5', '0 0 1 1 *',
  '59 23 31 12 *', '0 0 0 29 2 1', '1-5,10-15/5,30 * * * *', '0 0 1-31 * 1', '0 0 * * */1',
  '* * * * * ?', '0 0 * * 0,7', '@midnight', '0 0 * * 1#2,5#2', '0 0 * * ?#2', 'H * * * *',
  '5', '5 4 3 2', '',
  // rejected by cron-parser
  '0 0 31 2 *', '0 0 30 2 *', '0 0 31 4 *', '60 * * * *', '* 24 * * *', '0 0 32 * *',
  '0 0 * 13 *', '0 0 * * 8', '*/0 * * * *', '1-70 * * * *', '0 0 LW * *', '0 0 15W * *',
  '* * * * * * *', '@reboot', '@every 5m', '5-1 * * * *', '0 0 * * 1#6', '0 0 * * L',
  'a b c d e', 'mon * * * *', '0 0 * JANUARY *', '0 0 * * sat-sun', '0 0 */2,3 * *',
  '1,1 * * * *', '0 12 * * 1#2,5', '-1 * * * *', '/5 * * * *', '*/2/3 * * * *',
  '0,,1 * * * *', '1.5 * * * *', '+5 * * * *', '0 0 1L * *', '@YEARLY',
];
const starts = [
  '2026-01-01T00:00:00.000Z', '2026-02-27T23:59:59.500Z', '2026-06-15T12:34:56.000Z',
  '2027-12-31T23:30:00.000Z',
];
const zones = ['UTC', 'America/New_York', 'Europe/Prague', 'Asia/Kolkata'];

// Daylight-saving cases: (expression, zone, start) around a transition.
const dst = [];
const transitions = [
  ['America/New_York', '2026-03-08T04:00:00.000Z'], // spring forward 02:00 -> 03:00
  ['America/New_York', '2026-11-01T03:00:00.000Z'], // fall back 02:00 -> 01:00
  ['Europe/Prague', '2026-03-28T22:00:00.000Z'], // spring forward 02:00 -> 03:00
  ['Europe/Prague', '2026-10-24T22:00:00.000Z'], // fall back 03:00 -> 02:00
  ['Australia/Lord_Howe', '2026-10-03T12:00:00.000Z'], // spring forward 02:00 -> 02:30
  ['Australia/Lord_Howe', '2026-04-04T12:00:00.000Z'], // fall back 02:00 -> 01:30
];
const dstExpressions = [
  '30 2 * * *', '0 2 * * *', '30 1 * * *', '0 1 * * *', '0 3 * * *', '45 2 * * *',
  '0 * * * *', '*/30 * * * *', '*/20 1 * * *', '*/20 2 * * *', '0 1-3 * * *', '15 * * * *',
  '0 */2 * * *', '0 30 1 * * *', '0 0 * * *', '0 0,30 0-4 * * *', '0 0 2 * * 0',
];
for (const [tz, start] of transitions) {
  for (const expression of dstExpressions) dst.push([expression, tz, start]);
}

function run(expression, tz, start) {
  try {
    const it = CronExpressionParser.parse(expression, { currentDate: start, tz });
    return { expression, tz, start, next: it.take(N).map((d) => d.toISOString()) };
  } catch (err) {
    return { expression, tz, start, error: String(err.message) };
  }
}

const cases = [];
for (const expression of expressions) {
  const first = run(expression, zones[0], starts[0]);
  if (first.error !== undefined) {
    cases.push(first); // a rejection does not depend on the zone or the start
    continue;
  }
  for (const tz of zones) for (const start of starts) cases.push(run(expression, tz, start));
}
for (const [expression, tz, start] of dst) cases.push({ ...run(expression, tz, start), dst: true });

// One case per line, so a regeneration diffs readably.
const lines = cases.map((c) => '  ' + JSON.stringify(c));
process.stdout.write(
  `{"generator": "cron-parser ${version}", "count": ${N}, "cases": [\n${lines.join(',\n')}\n]}\n`,
);
