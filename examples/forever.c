int main() {
    for (;;) {
    }
}
