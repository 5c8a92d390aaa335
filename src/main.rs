fn main() -> std::process::ExitCode {
    affectd::cli::main()
}
