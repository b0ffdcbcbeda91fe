// kafkajs against a spindle broker: admin calls and a producer. Prints one
// JSON object on stdout for tools/interop/test_kafkajs.py to check; logs go
// to stderr. kafkajs's consumer needs consumer groups, which spindle does
// not implement yet, so the test reads the records back with librdkafka.
//
// usage: node interop.js BOOTSTRAP TOPIC SCRATCH_TOPIC BASE_TIMESTAMP_MS

'use strict'

const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs')

const [bootstrap, topic, scratch, baseArg] = process.argv.slice(2)
if (!bootstrap || !topic || !scratch || !baseArg) {
  process.stderr.write('usage: node interop.js BOOTSTRAP TOPIC SCRATCH_TOPIC BASE_TIMESTAMP_MS\n')
  process.exit(2)
}
const base = Number(baseArg)
const PARTITIONS = 3
const PER_PARTITION = 10

const kafka = new Kafka({
  clientId: 'spindle-interop-kafkajs',
  brokers: [bootstrap],
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 3, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => {
    process.stderr.write(JSON.stringify({ namespace, level, ...log }) + '\n')
  }
})

function messagesFor (round) {
  const out = []
  for (let p = 0; p < PARTITIONS; p++) {
    for (let i = 0; i < PER_PARTITION; i++) {
      out.push({
        partition: p,
        key: `k-${round}-${p}-${i}`,
        value: `v-${round}-${p}-${i}-` + 'x'.repeat(i * 10),
        headers: { 'h-index': String(i), 'h-round': round },
        timestamp: String(base + (round === 'plain' ? 0 : 100000) + i * 1000)
      })
    }
  }
  return out
}

async function main () {
  const admin = kafka.admin()
  await admin.connect()
  const result = {}
  try {
    result.created = await admin.createTopics({
      topics: [{
        topic,
        numPartitions: PARTITIONS,
        replicationFactor: 1,
        configEntries: [{ name: 'retention.ms', value: '86400000' }]
      }],
      waitForLeaders: true
    })
    // kafkajs answers false (not an error) when the topic already exists.
    result.createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }] })
    result.topics = (await admin.listTopics()).sort()
    result.metadata = await admin.fetchTopicMetadata({ topics: [topic] })
    const configs = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms', 'cleanup.policy'] }],
      includeSynonyms: false
    })
    result.configs = configs.resources.map(r => ({
      errorCode: r.errorCode,
      name: r.resourceName,
      entries: Object.fromEntries(r.configEntries.map(e => [e.configName, e.configValue]))
    }))

    const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false })
    await producer.connect()
    try {
      result.sent = {
        plain: await producer.send({ topic, acks: -1, messages: messagesFor('plain') }),
        gzip: await producer.send({ topic, acks: -1, compression: CompressionTypes.GZIP, messages: messagesFor('gzip') })
      }
    } finally {
      await producer.disconnect()
    }

    result.offsets = await admin.fetchTopicOffsets(topic)
    // The first record with index >= 5: of round 'plain' (an uncompressed
    // batch), and of round 'gzip' (inside a compressed batch).
    result.offsetsByTimestampPlain = await admin.fetchTopicOffsetsByTimestamp(topic, base + 4500)
    result.offsetsByTimestampGzip = await admin.fetchTopicOffsetsByTimestamp(topic, base + 100000 + 4500)
    result.offsetsPastEnd = await admin.fetchTopicOffsetsByTimestamp(topic, base + 10000000)

    await admin.createTopics({ topics: [{ topic: scratch, numPartitions: 1 }], waitForLeaders: true })
    await admin.deleteTopics({ topics: [scratch], timeout: 10000 })
    result.topicsAfterDelete = (await admin.listTopics()).sort()
  } finally {
    await admin.disconnect()
  }
  process.stdout.write(JSON.stringify(result) + '\n')
}

main().catch(e => {
  process.stderr.write(`kafkajs failed: ${e && e.stack ? e.stack : e}\n`)
  process.exit(1)
})
