import Consumer
import Core
import Kafka
import ServiceLifecycle

/// Publishes consumer lag per partition and readiness every second, until the graceful shutdown. It runs beside
/// the pipeline, not in it: lag and readiness matter most when the pipeline is stuck waiting for
/// HAProxy.
struct LagReporter: Service {
    let consumer: KafkaConsumer
    let status: BridgeStatus
    let metrics: BridgeMetrics
    var interval: Duration = .seconds(1)

    func run() async {
        await cancelWhenGracefulShutdown { await self.report() }
    }

    func report() async {
        while !Task.isCancelled {
            let snapshot = status.snapshot
            metrics.ready.record(snapshot.isReady ? 1 : 0)
            let committed = snapshot.committed
            let assigned = consumer.currentAssignment
            for (partition, high) in consumer.highWatermarks where assigned.contains(partition) {
                metrics.lag(partition, max(0, high - (committed[partition] ?? 0)))
            }
            try? await Task.sleep(for: interval)
        }
    }
}
