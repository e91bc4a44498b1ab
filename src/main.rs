fn main() {
    std::process::exit(hoist::run());
}
