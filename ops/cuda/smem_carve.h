// Carve-out of a kernel's dynamic shared memory: regions of the given byte sizes laid end
// to end from byte 0, their offsets computed and checked at compile time. Plain C++ (no
// CUDA headers), so host launchers can size their launches with it too.
#pragma once

namespace comba::cuda {

// Dynamic shared memory one CTA can opt into on sm_90 (227 KiB).
inline constexpr int kMaxSmemBytes = 227 * 1024;
// Every region starts on a 16-byte boundary: cp.async, ldmatrix and uint4 accesses need it.
inline constexpr int kSmemAlign = 16;

namespace detail {
template <int... Bytes>
constexpr int smem_offset(int region) {
  constexpr int sizes[] = {Bytes..., 0};
  int offset = 0;
  for (int i = 0; i < region; ++i) offset += sizes[i];
  return offset;
}

template <int... Bytes>
constexpr bool smem_aligned() {
  constexpr int sizes[] = {Bytes..., 0};
  for (int size : sizes) {
    if (size % kSmemAlign != 0) return false;
  }
  return true;
}
}  // namespace detail

// Regions of Bytes... bytes, in that order: at(i) is region i's first byte, kBytes the
// total. A layout names its regions' offsets from at() and indexes them in one place.
template <int... Bytes>
struct SmemCarve {
  static constexpr int kRegions = sizeof...(Bytes);
  static constexpr int at(int region) { return detail::smem_offset<Bytes...>(region); }
  static constexpr int kBytes = detail::smem_offset<Bytes...>(kRegions);
  static_assert(detail::smem_aligned<Bytes...>(), "a shared-memory region is not a multiple of 16 bytes");
  static_assert(kBytes <= kMaxSmemBytes, "shared-memory regions exceed one CTA's dynamic shared memory");
};

// The larger of two regions that take turns in the same bytes (a union of phases).
constexpr int smem_max(int a, int b) { return a > b ? a : b; }

}  // namespace comba::cuda
