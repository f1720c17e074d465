//! The benchmark's ceiling: bare actix-web answering fixed bytes from
//! memory, nothing else (no middleware, no headers beyond the content
//! type). `ceiling PORT /path=FILE…` serves each file's bytes at its path.

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|port| port.parse().ok())
        .expect("usage: ceiling PORT /path=FILE…");
    let routes: Vec<(String, web::Bytes)> = args
        .map(|route| {
            let (path, file) = route.split_once('=').expect("a route is /path=FILE");
            let body = std::fs::read(file).expect("the file is readable");
            (path.to_owned(), web::Bytes::from(body))
        })
        .collect();
    HttpServer::new(move || {
        routes.iter().fold(App::new(), |app, (path, body)| {
            let body = body.clone();
            app.route(
                path,
                web::get().to(move || {
                    let body = body.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
