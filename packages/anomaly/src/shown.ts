import { shownKey } from '@holdfast/core';

/**
 * Text as the watch's events, snapshots and warnings show it: core's `shownKey`, as the breaker
 * registry shows a key (each URL in it without its credentials, secret query parameters in a URL
 * or a request path, `password=`, `AccountKey=`, `Authorization: Bearer x`, a leading
 * `user:password@`). A key the breaker registry already showed so shows as itself.
 */
export const shown: (text: string) => string = shownKey;
