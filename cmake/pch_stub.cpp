// The one source of the targets that build the precompiled LibTorch headers
// (cmake/torch_pch.cmake). Their users depend on the whole target, so the executables
// among them are linked too: hence main.
int main() { return 0; }
