import SluiceKubeClient
import Testing

@Suite("Request targets")
struct KubeAPIPathTests {
    @Test func collections() {
        #expect(KubeResource.services.collectionPath(namespace: nil) == "/api/v1/services")
        #expect(KubeResource.services.collectionPath(namespace: "web") == "/api/v1/namespaces/web/services")
        #expect(
            KubeResource.endpointSlices.collectionPath(namespace: nil) == "/apis/discovery.k8s.io/v1/endpointslices")
        #expect(
            KubeResource.endpointSlices.collectionPath(namespace: "kube-system")
                == "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices")
    }

    @Test func pagedList() {
        #expect(KubeAPIPath.list(.services, namespace: nil) == "/api/v1/services?limit=500")
        #expect(KubeAPIPath.list(.services, namespace: nil, continueToken: "") == "/api/v1/services?limit=500")
        #expect(
            KubeAPIPath.list(.endpointSlices, namespace: "a", continueToken: "eyJ2Ijoi+/=")
                == "/apis/discovery.k8s.io/v1/namespaces/a/endpointslices?limit=500&continue=eyJ2Ijoi%2B%2F%3D")
    }

    @Test func watchFromAResourceVersionWithBookmarks() {
        #expect(
            KubeAPIPath.watch(.services, namespace: nil, resourceVersion: "12746", timeoutSeconds: 300)
                == "/api/v1/services?watch=1&resourceVersion=12746&allowWatchBookmarks=true&timeoutSeconds=300")
        #expect(
            KubeAPIPath.watch(.endpointSlices, namespace: "m", resourceVersion: "a b&c", timeoutSeconds: 5)
                == "/apis/discovery.k8s.io/v1/namespaces/m/endpointslices?watch=1&resourceVersion=a%20b%26c"
                + "&allowWatchBookmarks=true&timeoutSeconds=5")
    }

    @Test func escapingKeepsOnlyUnreservedCharacters() {
        #expect(KubeAPIPath.escape("AZaz09-._~") == "AZaz09-._~")
        #expect(KubeAPIPath.escape("a/b?c#d%") == "a%2Fb%3Fc%23d%25")
        #expect(KubeAPIPath.escape("é") == "%C3%A9")
        #expect(KubeResource.services.collectionPath(namespace: "x/y") == "/api/v1/namespaces/x%2Fy/services")
    }
}

@Suite("Durations on the command line")
struct DurationSyntaxTests {
    @Test func units() {
        #expect(DurationSyntax.parse("2s") == .seconds(2))
        #expect(DurationSyntax.parse("90s") == .seconds(90))
        #expect(DurationSyntax.parse("250ms") == .milliseconds(250))
        #expect(DurationSyntax.parse("5m") == .seconds(300))
        #expect(DurationSyntax.parse("1h") == .seconds(3600))
        #expect(DurationSyntax.parse("30") == .seconds(30))
        #expect(DurationSyntax.parse("") == nil)
        #expect(DurationSyntax.parse("-1s") == nil)
        #expect(DurationSyntax.parse("2x") == nil)
    }
}
