// A kafkajs consumer-group member: consumes TOPIC in GROUP until it has
// seen COUNT records, commits, and prints {"records": [[partition, offset,
// key, value], ...]} on stdout.
//
// usage: node group.js BOOTSTRAP TOPIC GROUP COUNT

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, group, countArg] = process.argv.slice(2)
const want = Number(countArg)
const kafka = new Kafka({
  clientId: 'spindle-interop-kafkajs-group',
  brokers: [bootstrap],
  connectionTimeout: 3000,
  requestTimeout: 15000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => {
    process.stderr.write(JSON.stringify({ namespace, level, ...log }) + '\n')
  }
})

async function main () {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const records = []
  let done
  const finished = new Promise(resolve => { done = resolve })
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 100,
    eachMessage: async ({ partition, message }) => {
      records.push([partition, Number(message.offset), message.key.toString(), message.value.toString()])
      if (records.length >= want) done()
    }
  })
  const timer = setTimeout(() => done(), 60000)
  await finished
  clearTimeout(timer)
  await consumer.commitOffsets([]).catch(() => {})
  await consumer.disconnect()
  process.stdout.write(JSON.stringify({ records }) + '\n')
}

main().catch(e => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + '\n')
  process.exit(1)
})
