// The redaction lives in core, shared with failover (which names string endpoints by it).
export { defaultSecretParams, Redactor } from '@holdfast/core';
