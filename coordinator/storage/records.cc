#include "coordinator/storage/records.h"

namespace quartet::coordinator {

const char* CampaignStateName(CampaignState s) {
  switch (s) {
    case CampaignState::kRunning:
      return "RUNNING";
    case CampaignState::kPaused:
      return "PAUSED";
    case CampaignState::kCancelled:
      return "CANCELLED";
    case CampaignState::kDone:
      return "DONE";
  }
  return "UNKNOWN";
}

const char* CandidateStateName(CandidateState s) {
  switch (s) {
    case CandidateState::kPending:
      return "PENDING";
    case CandidateState::kLeased:
      return "LEASED";
    case CandidateState::kSucceeded:
      return "SUCCEEDED";
    case CandidateState::kFailed:
      return "FAILED";
    case CandidateState::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

int64_t& StateCounts::at(CandidateState s) {
  switch (s) {
    case CandidateState::kPending:
      return pending;
    case CandidateState::kLeased:
      return leased;
    case CandidateState::kSucceeded:
      return succeeded;
    case CandidateState::kFailed:
      return failed;
    case CandidateState::kCancelled:
      return cancelled;
  }
  return pending;
}

int64_t StateCounts::at(CandidateState s) const { return const_cast<StateCounts*>(this)->at(s); }

}  // namespace quartet::coordinator
