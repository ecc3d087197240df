module github.com/adfrun/adfrun

go 1.22
