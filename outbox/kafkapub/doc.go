// Package kafkapub is an outbox publisher for Kafka, through franz-go, and
// the consumer-side helper that makes processing of its records exactly-once
// through an inbox.
//
// Publish produces each message as one record to the topic named by the
// message's topic, with the partition key as record key (so that all the
// messages of a key land in one partition, in order), the message id in the
// IDHeader header and the message's headers as record headers. It returns nil
// only once the record is acknowledged by all in-sync replicas.
//
// The client is an idempotent producer (franz-go's default, which this
// package requires): its own retries of a produce request neither duplicate
// nor reorder records within a partition. The relay delivers the messages of
// one key one at a time, so a message is not produced before the previous
// one of its key was acknowledged: per-key order survives the relay's retries
// into the topic. A retry by the relay after a produce whose outcome was lost
// (a timeout) may store the record twice, adjacent in its partition;
// consumers deduplicate on IDHeader (see Consume).
//
// Consume runs a handler once per message id inside the inbox transaction of
// idempotency/sqlstore; Position reads the outbox position the relay attaches
// to every message, for an ordering guard (sqlstore.ApplyVersion) that drops
// a message older than the last one applied for its key.
package kafkapub
