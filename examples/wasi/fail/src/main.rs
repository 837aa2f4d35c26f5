//! Says why on stderr and exits with failure.

fn main() {
    eprintln!("failing on purpose");
    std::process::exit(3);
}
