// Checks the release setup without git or the network: .changeset/config.json parses and names
// real packages (@changesets/config throws on a bad one), every pending changeset reads, and the
// release plan they make keeps the @holdfast/* fixed group at one version.
import getReleasePlan from '@changesets/get-release-plan';

const root = new URL('..', import.meta.url).pathname;
const plan = await getReleasePlan(root);
const ours = plan.releases.filter((r) => r.name.startsWith('@holdfast/') && r.type !== 'none');
const versions = new Set(ours.map((r) => r.newVersion));
console.log(
  `${plan.changesets.length} pending changeset(s); next release: ${ours.map((r) => `${r.name}@${r.newVersion}`).join(', ') || 'none'}`,
);
if (versions.size > 1) {
  console.error(`the fixed group would split across versions: ${[...versions].join(', ')}`);
  process.exit(1);
}
