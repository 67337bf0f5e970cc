//! Prints what the strict loader and the analyser make of a pickle file:
//! `cargo run -p tensorseal-pickle --example pickle_dump -- FILE`.

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: pickle_dump FILE");
        std::process::exit(2);
    };
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(2);
        }
    };
    let limits = tensorseal_pickle::Limits::default();
    match tensorseal_pickle::load(&data, &limits) {
        Ok(v) => println!("load: {v:#?}"),
        Err(e) => println!("load error: {e}"),
    }
    let a = tensorseal_pickle::analyze(&data, &limits);
    for g in a.all_globals() {
        println!(
            "global {} at {} via {} ({:?}) class={} calls={:?}",
            g.qualified(),
            g.offset,
            g.opcode,
            g.resolution,
            g.class.label(),
            g.calls.iter().map(|c| c.kind).collect::<Vec<_>>()
        );
    }
    println!(
        "pickles={} errors={:?} trailing={:?}",
        a.pickles.len(),
        a.errors,
        a.trailing
    );
}
