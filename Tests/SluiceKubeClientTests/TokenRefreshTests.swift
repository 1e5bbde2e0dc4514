import SluiceKubeClient
import Synchronization
import Testing

@Suite("Token refresh")
struct TokenRefreshTests {
    let start = ContinuousClock.now

    @Test func policyRereadsAfterSixtySecondsOrA401() {
        var policy = TokenRefreshPolicy()
        #expect(policy.needsRead(now: start))
        policy.didRead(at: start)
        #expect(!policy.needsRead(now: start + .seconds(59)))
        #expect(policy.needsRead(now: start + .seconds(60)))
        policy.didRead(at: start + .seconds(60))
        #expect(!policy.needsRead(now: start + .seconds(61)))
        policy.unauthorized()
        #expect(policy.needsRead(now: start + .seconds(61)))
        policy.didRead(at: start + .seconds(61))
        #expect(!policy.needsRead(now: start + .seconds(62)))
    }

    @Test func fileSourceReadsOnScheduleAndKeepsTheOldTokenWhenTheFileIsGone() {
        let file = Mutex<String?>("one\n")
        let reads = Mutex(0)
        let source = BearerTokenSource(.file("/t")) { path in
            #expect(path == "/t")
            reads.withLock { count in count += 1 }
            return file.withLock { $0 }
        }
        #expect(source.token(now: start) == "one")
        file.withLock { $0 = "two" }
        #expect(source.token(now: start + .seconds(30)) == "one")
        #expect(source.token(now: start + .seconds(60)) == "two")
        #expect(reads.withLock { $0 } == 2)
        file.withLock { $0 = "three" }
        #expect(source.unauthorized())
        #expect(source.token(now: start + .seconds(61)) == "three")
        file.withLock { $0 = nil }
        #expect(source.token(now: start + .seconds(200)) == "three")
        #expect(reads.withLock { $0 } == 4)
    }

    @Test func literalAndNoTokenNeverRead() {
        let literal = BearerTokenSource(.literal("fixed")) { _ in
            Issue.record("read"); return nil
        }
        #expect(literal.token(now: start) == "fixed")
        #expect(!literal.unauthorized())
        let none = BearerTokenSource(.none) { _ in
            Issue.record("read"); return nil
        }
        #expect(none.token(now: start) == nil)
    }
}
