#ifndef SWIFTDRAFT_CHDF5_SHIM_H
#define SWIFTDRAFT_CHDF5_SHIM_H
#include <hdf5.h>

/* HDF5's predefined types and property-list defaults are macros that expand to calls of
 * H5open() plus a global (H5T_NATIVE_FLOAT) or to constants Swift cannot import (H5P_DEFAULT);
 * each one used by the project is a static inline function here. */
static inline hid_t swd_h5p_default(void) { return H5P_DEFAULT; }
static inline hid_t swd_h5s_all(void) { return H5S_ALL; }
static inline hid_t swd_h5t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t swd_h5t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t swd_h5t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t swd_h5t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t swd_h5t_native_uint32(void) { return H5T_NATIVE_UINT32; }
static inline hid_t swd_h5t_native_uint64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t swd_h5t_native_uint8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t swd_h5t_c_s1(void) { return H5T_C_S1; }
static inline hid_t swd_h5p_file_access(void) { return H5P_FILE_ACCESS; }
static inline hid_t swd_h5p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline unsigned swd_h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned swd_h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline unsigned swd_h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline size_t swd_h5t_variable(void) { return H5T_VARIABLE; }

/* Checkpoint files (DraftCheckpoint): explicit little-endian file types so a file written on any host reads the same
 * everywhere, the default error stack (to silence HDF5's own stderr printing), and the creation property classes. */
static inline hid_t swd_h5e_default(void) { return H5E_DEFAULT; }
static inline hid_t swd_h5t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t swd_h5t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline hid_t swd_h5t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t swd_h5t_std_u64le(void) { return H5T_STD_U64LE; }
static inline hid_t swd_h5p_file_create(void) { return H5P_FILE_CREATE; }
static inline hid_t swd_h5p_group_create(void) { return H5P_GROUP_CREATE; }
#endif
