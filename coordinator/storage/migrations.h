// The schema migrations, compiled into the binary from coordinator/storage/migrations/*.sql.
// A migration's version is the number its file name starts with; they apply in version order.
#ifndef QUARTET_COORDINATOR_STORAGE_MIGRATIONS_H_
#define QUARTET_COORDINATOR_STORAGE_MIGRATIONS_H_

#include <string>
#include <vector>

namespace quartet::coordinator {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// Every migration, ascending by version.
const std::vector<Migration>& Migrations();

}  // namespace quartet::coordinator

#endif  // QUARTET_COORDINATOR_STORAGE_MIGRATIONS_H_
