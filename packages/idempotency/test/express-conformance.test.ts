import { expressFramework } from './http-support/apps.js';
import { httpConformance } from './http-support/conformance.js';
import { memoryStores, redisStores } from './http-support/stores.js';

httpConformance(expressFramework, memoryStores);
redisStores((stores) => httpConformance(expressFramework, stores));
