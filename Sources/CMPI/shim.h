#ifndef SWIFTDRAFT_CMPI_SHIM_H
#define SWIFTDRAFT_CMPI_SHIM_H
#include <mpi.h>

/* Open MPI spells its handles as casts of addresses of globals (e.g. MPI_COMM_WORLD is
 * ((MPI_Comm)&ompi_mpi_comm_world)); Swift's importer cannot see through such macros,
 * so each one the project uses is exposed as a static inline function. */
static inline MPI_Comm swd_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype swd_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype swd_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype swd_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype swd_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op swd_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op swd_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op swd_mpi_min(void) { return MPI_MIN; }
static inline void *swd_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Request swd_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *swd_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler swd_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int swd_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int swd_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int swd_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline MPI_Status *swd_mpi_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Comm swd_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Info swd_mpi_info_null(void) { return MPI_INFO_NULL; }
static inline int swd_mpi_comm_type_shared(void) { return MPI_COMM_TYPE_SHARED; }
static inline int swd_mpi_success(void) { return MPI_SUCCESS; }
#endif
