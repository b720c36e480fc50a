import { fastifyFramework } from './http-support/apps.js';
import { httpConformance } from './http-support/conformance.js';
import { memoryStores, redisStores } from './http-support/stores.js';

httpConformance(fastifyFramework, memoryStores);
redisStores((stores) => httpConformance(fastifyFramework, stores));
