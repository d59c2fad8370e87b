import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// The HTTP endpoints an operator scrapes and probes: `/metrics` (Prometheus text format, from the
/// registry the process bootstrapped swift-metrics with), `/healthz` (the process is alive) and
/// `/readyz` (consuming, connected to HAProxy, first synchronisation done; 503 with the reasons
/// otherwise).
public enum OperationsServer {
    public static func make(
        listen: BridgeConfiguration.Listen, registry: PrometheusCollectorRegistry, status: BridgeStatus, logger: Logger,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some Service {
        let router = Router()
        router.get("/metrics") { _, _ -> Response in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
        router.get("/healthz") { _, _ in "ok\n" }
        router.get("/readyz") { _, _ -> Response in
            let snapshot = status.snapshot
            var missing: [String] = []
            if snapshot.standby { missing.append("standby: another mapbridge holds the state directory") }
            if !snapshot.consumerStarted { missing.append("consumer not started") }
            if !snapshot.haproxyConnected { missing.append("HAProxy not connected") }
            if !snapshot.firstSyncDone { missing.append("first synchronisation with HAProxy not done") }
            let text = missing.isEmpty ? "ready\n" : "not ready: \(missing.joined(separator: ", "))\n"
            return Response(status: missing.isEmpty ? .ok : .serviceUnavailable, body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        return Application(
            router: router, configuration: .init(address: .hostname(listen.host, port: listen.port), serverName: "mapbridge"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? listen.port) }, logger: logger)
    }
}
