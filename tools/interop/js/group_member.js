// A kafkajs consumer-group member that runs until stdin closes. Prints JSON
// lines on stdout: {"event": "joined", "memberId": ..} for every group join (kafkajs's GROUP_JOIN), {"event": "record",
// "partition": p, "offset": o, "value": v} for every record, and
// {"event": "crash", "error": ..} if the consumer crashes.
//
// usage: node group_member.js BOOTSTRAP TOPIC GROUP

'use strict'

const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, group] = process.argv.slice(2)
const kafka = new Kafka({
  clientId: 'spindle-interop-kafkajs-member',
  brokers: [bootstrap],
  connectionTimeout: 3000,
  requestTimeout: 15000,
  // Enough retries to ride out a broker restart without a consumer crash.
  retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 1000 },
  // Errors go to stderr, for a failing test's report.
  logLevel: logLevel.ERROR,
  logCreator: () => ({ namespace, level, log }) => {
    process.stderr.write(JSON.stringify({ namespace, level, ...log }) + '\n')
  }
})

const say = event => process.stdout.write(JSON.stringify(event) + '\n')

async function main () {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
  consumer.on(consumer.events.GROUP_JOIN, e => {
    say({ event: 'joined', memberId: e.payload.memberId })
  })
  consumer.on(consumer.events.CRASH, e => say({ event: 'crash', error: String(e.payload.error) }))
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: true,
    autoCommitInterval: 100,
    eachMessage: async ({ partition, message }) => {
      say({ event: 'record', partition, offset: Number(message.offset), value: message.value.toString() })
    }
  })
  process.stdin.resume()
  await new Promise(resolve => process.stdin.on('end', resolve))
  await consumer.disconnect()
}

main().catch(e => {
  say({ event: 'crash', error: String(e && e.stack ? e.stack : e) })
  process.exit(1)
})
