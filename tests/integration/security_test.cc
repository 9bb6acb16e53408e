// Roles and TLS over real gRPC on loopback (in-memory store: no database needed). Every RPC is
// called with every role; TLS runs with certificates made by openssl in a temporary directory.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_client.h"
#include "coordinator/core/coordinator_core.h"
#include "coordinator/service/services.h"
#include "coordinator/storage/memory_store.h"
#include "gmock/gmock.h"

namespace quartet::coordinator::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kAdmin[] = "admin-token-0123456789";
constexpr char kWorker[] = "worker-token-0123456789";
constexpr char kViewer[] = "viewer-token-0123456789";

// A coordinator's services over a MemoryStore, listening on 127.0.0.1.
class Server {
 public:
  Server(std::vector<Credential> credentials, std::shared_ptr<grpc::ServerCredentials> transport) {
    CoordinatorCore::Options o;
    core_ = std::move(*CoordinatorCore::Create(o, &store_, common::Clock::Real()));
    auth_ = std::make_unique<Authenticator>(std::move(credentials));
    campaigns_ = std::make_unique<CampaignServiceImpl>(core_.get(), auth_.get());
    workers_ = std::make_unique<WorkerServiceImpl>(core_.get(), auth_.get());
    grpc::EnableDefaultHealthCheckService(true);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", transport, &port_);
    b.SetMaxReceiveMessageSize(64 << 20);  // as quartet-coordinator
    b.RegisterService(campaigns_.get());
    b.RegisterService(workers_.get());
    server_ = b.BuildAndStart();
  }
  ~Server() {
    campaigns_->Shutdown();
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int port() const { return port_; }

 private:
  MemoryStore store_;
  std::unique_ptr<CoordinatorCore> core_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<CampaignServiceImpl> campaigns_;
  std::unique_ptr<WorkerServiceImpl> workers_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

std::vector<Credential> ThreeRoles() {
  return {{Role::kAdmin, kAdmin, "test"},
          {Role::kWorker, kWorker, "test"},
          {Role::kViewer, kViewer, "test"}};
}

// Calls `method` with an empty request (and, for streams, one empty message) and returns the
// status. Only the authentication outcome matters to these tests.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                       const std::string& token) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  grpc::Slice empty(std::string(""));
  grpc::ByteBuffer request(&empty, 1), response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) { done.set_value(s); });
  return done.get_future().get();
}

const std::vector<std::pair<std::string, Role>>& MethodRoles() {
  static const auto* const m = new std::vector<std::pair<std::string, Role>>{
      {"/quartet.v1.CampaignService/SubmitCampaign", Role::kAdmin},
      {"/quartet.v1.CampaignService/CancelCampaign", Role::kAdmin},
      {"/quartet.v1.CampaignService/GetCampaign", Role::kViewer},
      {"/quartet.v1.CampaignService/ListCampaigns", Role::kViewer},
      {"/quartet.v1.CampaignService/WatchCampaign", Role::kViewer},
      {"/quartet.v1.CampaignService/GetCoverageReport", Role::kViewer},
      {"/quartet.v1.CampaignService/GetYieldReport", Role::kViewer},
      {"/quartet.v1.CampaignService/ListResults", Role::kViewer},
      {"/quartet.v1.CampaignService/GetCandidate", Role::kViewer},
      {"/quartet.v1.CampaignService/PauseCampaign", Role::kAdmin},
      {"/quartet.v1.CampaignService/ResumeCampaign", Role::kAdmin},
      {"/quartet.v1.CampaignService/UpdateCampaign", Role::kAdmin},
      {"/quartet.v1.CampaignService/ListWorkers", Role::kViewer},
      {"/quartet.v1.CampaignService/DrainWorker", Role::kAdmin},
      {"/quartet.v1.WorkerService/RegisterWorker", Role::kWorker},
      {"/quartet.v1.WorkerService/LeaseCandidate", Role::kWorker},
      {"/quartet.v1.WorkerService/Heartbeat", Role::kWorker},
      {"/quartet.v1.WorkerService/StreamMetrics", Role::kWorker},
      {"/quartet.v1.WorkerService/CompleteCandidate", Role::kWorker},
      {"/quartet.v1.WorkerService/FailCandidate", Role::kWorker},
  };
  return *m;
}

TEST(Roles, EveryCallIsAllowedExactlyToItsRoleAndAdmin) {
  Server server(ThreeRoles(), grpc::InsecureServerCredentials());
  auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  const std::map<Role, std::string> tokens = {
      {Role::kAdmin, kAdmin}, {Role::kWorker, kWorker}, {Role::kViewer, kViewer}};
  for (const auto& [method, needed] : MethodRoles()) {
    for (const auto& [role, token] : tokens) {
      grpc::Status s = CallEmpty(channel, method, token);
      const bool allowed = role == Role::kAdmin || role == needed;
      SCOPED_TRACE(absl::StrCat(method, " as ", RoleName(role), ": ", s.error_message()));
      EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
      if (allowed) {
        EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      } else {
        ASSERT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
        EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("needs the ", RoleName(needed))));
        EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("has role ", RoleName(role))));
      }
    }
    EXPECT_EQ(CallEmpty(channel, method, "").error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method;
    EXPECT_EQ(CallEmpty(channel, method, "guess").error_code(), grpc::StatusCode::UNAUTHENTICATED)
        << method;
  }
}

TEST(Roles, AWorkerCredentialCannotSubmitOrCancel) {
  Server server(ThreeRoles(), grpc::InsecureServerCredentials());
  auto stub = quartet::v1::CampaignService::NewStub(
      grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials()));
  quartet::v1::SubmitCampaignRequest req;
  req.mutable_config()->set_name("forged");
  for (const char* f : {"AirNet", "BagNet"}) req.mutable_config()->add_pool(f);
  req.mutable_config()->set_k(2);
  req.mutable_config()->set_budget(1);
  req.mutable_config()->mutable_data()->set_dataset(quartet::v1::DATASET_SYNTHETIC);
  quartet::v1::SubmitCampaignResponse submitted;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kWorker));
    grpc::Status s = stub->SubmitCampaign(&ctx, req, &submitted);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(s.error_message(),
              "this call needs the admin role; the credential presented has role worker");
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kAdmin));
    ASSERT_TRUE(stub->SubmitCampaign(&ctx, req, &submitted).ok());
  }
  quartet::v1::CancelCampaignRequest cancel;
  cancel.set_campaign_id(submitted.campaign().id());
  quartet::v1::CancelCampaignResponse cancelled;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kWorker));
    EXPECT_EQ(stub->CancelCampaign(&ctx, cancel, &cancelled).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  quartet::v1::GetCampaignRequest get;
  get.set_campaign_id(submitted.campaign().id());
  quartet::v1::GetCampaignResponse got;
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kViewer));
  ASSERT_TRUE(stub->GetCampaign(&ctx, get, &got).ok());
  EXPECT_NE(got.campaign().state(), quartet::v1::CAMPAIGN_STATE_CANCELLED);
}

TEST(Roles, HealthNeedsNoToken) {
  Server server(ThreeRoles(), grpc::InsecureServerCredentials());
  auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_TRUE(CallEmpty(channel, "/grpc.health.v1.Health/Check", "").ok());
}

TEST(Roles, WithoutCredentialsEveryCallIsAllowed) {
  Server server({}, grpc::InsecureServerCredentials());
  auto channel = grpc::CreateChannel(server.address(), grpc::InsecureChannelCredentials());
  for (const auto& [method, needed] : MethodRoles()) {
    grpc::Status s = CallEmpty(channel, method, "");
    EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method;
    EXPECT_NE(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << method;
  }
}

// ---- Bounded input on the wire -----------------------------------------------------------------

class BoundsTest : public ::testing::Test {
 protected:
  BoundsTest()
      : server_(ThreeRoles(), grpc::InsecureServerCredentials()),
        stub_(quartet::v1::WorkerService::NewStub(
            grpc::CreateChannel(server_.address(), grpc::InsecureChannelCredentials()))) {}

  static void Prepare(grpc::ClientContext* ctx) {
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kWorker));
  }
  static void ExpectInvalid(const grpc::Status& s, const std::string& field) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), ::testing::StartsWith(field + ": "));
    EXPECT_LT(s.error_message().size(), 300u);
  }

  Server server_;
  std::unique_ptr<quartet::v1::WorkerService::Stub> stub_;
};

TEST_F(BoundsTest, OversizedAndMalformedWorkerFieldsAreInvalidArgumentNamingTheField) {
  {
    quartet::v1::RegisterWorkerRequest r;
    r.set_host(std::string(10 << 20, 'h'));
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ExpectInvalid(stub_->RegisterWorker(&ctx, r, &resp), "host");
  }
  {
    quartet::v1::RegisterWorkerRequest r;
    r.set_host("box\n2026-12-02 [info] forged");
    quartet::v1::RegisterWorkerResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ExpectInvalid(stub_->RegisterWorker(&ctx, r, &resp), "host");
  }
  {
    quartet::v1::CompleteCandidateRequest r;
    r.set_worker_id("w");
    r.set_candidate_id(1);
    r.set_lease_token(1);
    r.mutable_result()->set_test_accuracy(0.99);
    r.mutable_result()->set_wall_seconds(std::numeric_limits<double>::quiet_NaN());
    quartet::v1::CompleteCandidateResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ExpectInvalid(stub_->CompleteCandidate(&ctx, r, &resp), "wall_seconds");
  }
  {
    quartet::v1::FailCandidateRequest r;
    r.set_worker_id("w");
    r.set_message(std::string("out of memory\0", 14));
    quartet::v1::FailCandidateResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    ExpectInvalid(stub_->FailCandidate(&ctx, r, &resp), "message");
  }
  {
    grpc::ClientContext ctx;
    Prepare(&ctx);
    quartet::v1::StreamMetricsResponse resp;
    auto writer = stub_->StreamMetrics(&ctx, &resp);
    quartet::v1::MetricBatch b;
    b.set_worker_id("w");
    auto* p = b.add_points();
    p->set_name("train_loss");
    p->set_step(-5);
    writer->Write(b);
    writer->WritesDone();
    ExpectInvalid(writer->Finish(), "points[0].step");
  }
}

// ---- TLS ---------------------------------------------------------------------------------------

// Certificates made once per test binary: two CAs, a server certificate for 127.0.0.1 and
// localhost signed by the first, and client certificates signed by each.
class Certificates {
 public:
  static const Certificates& Get() {
    static const Certificates* const c = new Certificates();
    return *c;
  }
  bool ok() const { return ok_; }
  void Remove() const { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

 private:
  Certificates() {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("quartet-tls-test-", ::getpid());
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "server.ext")
        << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    std::ofstream(dir_ / "client.ext") << "extendedKeyUsage=clientAuth\n";
    const std::string d = dir_.string();
    const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    auto ca = [&](const std::string& name) {
      return absl::StrCat("openssl req -x509 ", key, " -keyout ", d, "/", name, ".key -out ", d,
                          "/", name, ".pem -days 36500 -subj /CN=", name);
    };
    auto leaf = [&](const std::string& name, const std::string& signer, const std::string& cn,
                    const std::string& ext) {
      return absl::StrCat("openssl req ", key, " -keyout ", d, "/", name, ".key -out ", d, "/",
                          name, ".csr -subj /CN=", cn, " && openssl x509 -req -in ", d, "/", name,
                          ".csr -CA ", d, "/", signer, ".pem -CAkey ", d, "/", signer,
                          ".key -CAcreateserial -days 36500 -extfile ", d, "/", ext, " -out ", d,
                          "/", name, ".pem");
    };
    const std::string script = absl::StrCat("( ", ca("ca"), " && ", ca("other-ca"), " && ",
                                            leaf("server", "ca", "localhost", "server.ext"), " && ",
                                            leaf("client", "ca", "worker", "client.ext"), " && ",
                                            leaf("stranger", "other-ca", "stranger", "client.ext"),
                                            " ) >", d, "/openssl.log 2>&1");
    ok_ = std::system(script.c_str()) == 0;
  }
  std::filesystem::path dir_;
  bool ok_ = false;
};

class TlsTest : public ::testing::Test {
 protected:
  static void TearDownTestSuite() { Certificates::Get().Remove(); }
  void SetUp() override {
    if (!Certificates::Get().ok()) GTEST_SKIP() << "openssl could not make test certificates";
  }
  static std::string Cert(const std::string& name) { return Certificates::Get().path(name); }

  // Starts a TLS server; with `client_ca`, mutual TLS.
  std::unique_ptr<Server> Start(bool mutual) {
    ServerTlsOptions o;
    o.cert_file = Cert("server.pem");
    o.key_file = Cert("server.key");
    if (mutual) o.client_ca_file = Cert("ca.pem");
    auto creds = MakeServerCredentials(o);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return std::make_unique<Server>(ThreeRoles(), *creds);
  }

  // A ListCampaigns call as admin through quartetctl's and the worker's connection code.
  static grpc::Status List(const common::ClientOptions& options) {
    auto conn = common::ClientConnection::Create(options);
    if (!conn.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad options");
    auto stub = quartet::v1::CampaignService::NewStub(conn->channel());
    grpc::ClientContext ctx;
    conn->Prepare(&ctx, absl::Seconds(10));
    quartet::v1::ListCampaignsResponse resp;
    return stub->ListCampaigns(&ctx, {}, &resp);
  }

  common::ClientOptions Options(const Server& server) {
    common::ClientOptions o;
    o.address = server.address();
    token_file_ = Certificates::Get().path("admin.token");
    std::ofstream(token_file_) << kAdmin << "\n";
    o.token_file = token_file_;
    return o;
  }

  std::string token_file_;
};

TEST_F(TlsTest, TrustedClientConnectsPlaintextAndForeignCaAreRefused) {
  auto server = Start(/*mutual=*/false);
  common::ClientOptions tls = Options(*server);
  tls.tls_ca_file = Cert("ca.pem");
  grpc::Status s = List(tls);
  EXPECT_TRUE(s.ok()) << s.error_message();

  common::ClientOptions plain = Options(*server);
  EXPECT_EQ(List(plain).error_code(), grpc::StatusCode::UNAVAILABLE);

  common::ClientOptions foreign = Options(*server);
  foreign.tls_ca_file = Cert("other-ca.pem");
  EXPECT_EQ(List(foreign).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsTest, MutualTlsRefusesClientsWithoutATrustedCertificate) {
  auto server = Start(/*mutual=*/true);
  common::ClientOptions with_cert = Options(*server);
  with_cert.tls_ca_file = Cert("ca.pem");
  with_cert.tls_client_cert_file = Cert("client.pem");
  with_cert.tls_client_key_file = Cert("client.key");
  grpc::Status s = List(with_cert);
  EXPECT_TRUE(s.ok()) << s.error_message();

  common::ClientOptions no_cert = Options(*server);
  no_cert.tls_ca_file = Cert("ca.pem");
  EXPECT_EQ(List(no_cert).error_code(), grpc::StatusCode::UNAVAILABLE);

  common::ClientOptions stranger = with_cert;
  stranger.tls_client_cert_file = Cert("stranger.pem");
  stranger.tls_client_key_file = Cert("stranger.key");
  EXPECT_EQ(List(stranger).error_code(), grpc::StatusCode::UNAVAILABLE);

  common::ClientOptions plain = Options(*server);
  EXPECT_EQ(List(plain).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(ServerTls, HalfConfiguredTlsIsRefused) {
  ServerTlsOptions key_only;
  key_only.key_file = "server.key";
  auto s = MakeServerCredentials(key_only);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("--tls_key without --tls_cert"));

  ServerTlsOptions cert_only;
  cert_only.cert_file = "server.pem";
  s = MakeServerCredentials(cert_only);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("--tls_cert without --tls_key"));

  ServerTlsOptions ca_only;
  ca_only.client_ca_file = "ca.pem";
  s = MakeServerCredentials(ca_only);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("--tls_client_ca needs TLS"));
}

}  // namespace
}  // namespace quartet::coordinator::testing
